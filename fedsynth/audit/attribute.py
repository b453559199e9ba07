"""Attribute disclosure: matching a real record's quasi-identifiers in the synthetic data to
infer its sensitive value.

For each record, the synthetic rows sharing its quasi-identifier values (continuous ones cut into
quantile bins of the training data) vote for a sensitive value. The guess is correct when the
vote's winner is the record's value; it is a *meaningful* disclosure only when it is correct and
the share of matching rows holding the true value beats that value's share in the real marginal,
i.e. the synthetic data told the attacker more than the population statistics already did.
Continuous sensitive columns are compared by quantile bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedsynth.audit.columns import as_codes, as_float, is_discrete, labels
from fedsynth.audit.report import AttributeDisclosure
from fedsynth.audit.sampling import equal_size_pair, sample_rows
from fedsynth.schema import Column


class BinCoder:
    """Codes of a column: labels for discrete ones, quantile bins of the training data otherwise.

    Code 0 is missing; codes are shared by every table coded with one fitted coder.
    """

    def __init__(self, column: Column, bins: int) -> None:
        self.column = column
        self.bins = bins

    def fit(self, train: pd.DataFrame) -> BinCoder:
        if not is_discrete(self.column):
            values = as_float(train[self.column.name], self.column)
            present = values[~np.isnan(values)]
            inner = np.linspace(0, 1, self.bins + 1)[1:-1]
            self.edges_ = np.unique(np.quantile(present, inner)) if len(present) else np.zeros(0)
        return self

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        series = df[self.column.name]
        if is_discrete(self.column):
            return as_codes(series, self.column) + 1
        values = as_float(series, self.column)
        return np.where(np.isnan(values), 0, np.digitize(values, self.edges_) + 1)

    @property
    def size(self) -> int:
        """How many distinct codes `transform` can return."""
        if is_discrete(self.column):
            return len(labels(self.column)) + 1
        return len(self.edges_) + 2


def attribute_disclosure(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame | None,
    quasi_identifiers: list[Column],
    sensitive: Column,
    *,
    bins: int,
    max_records: int,
    rng: np.random.Generator,
) -> AttributeDisclosure:
    """Match, correct-guess and meaningful-disclosure rates for one sensitive column."""
    qi_coders = [BinCoder(c, bins).fit(train) for c in quasi_identifiers]
    target = BinCoder(sensitive, bins).fit(train)
    if holdout is None:
        records, controls = sample_rows(train, max_records, rng), None
    else:
        records, controls = equal_size_pair(train, holdout, max_records, rng)
    marginal = np.bincount(target.transform(train), minlength=target.size)
    marginal = marginal / max(marginal.sum(), 1)
    votes = _Votes(synthetic, qi_coders, target)
    found = votes.judge(records, marginal)
    return AttributeDisclosure(
        sensitive=sensitive.name,
        quasi_identifiers=[c.name for c in quasi_identifiers],
        records=len(records),
        match_rate=found.matched,
        correct_rate=found.correct,
        baseline_accuracy=float(marginal.max()) if len(marginal) else 0.0,
        meaningful_rate=found.meaningful,
        holdout_meaningful_rate=(
            None if controls is None else votes.judge(controls, marginal).meaningful
        ),
    )


@dataclass(frozen=True)
class _Rates:
    matched: float
    correct: float
    meaningful: float


class _Votes:
    """Counts of each sensitive code among synthetic rows, per quasi-identifier key."""

    def __init__(self, synthetic: pd.DataFrame, qi_coders: list[BinCoder], target: BinCoder):
        self.qi_coders = qi_coders
        self.target = target
        keys = self._keys(synthetic)
        codes = target.transform(synthetic)
        table = pd.DataFrame({"key": keys, "code": codes}).value_counts().rename("n").reset_index()
        self.totals = table.groupby("key")["n"].sum()
        winners = table.sort_values(["key", "n", "code"], ascending=[True, False, True])
        self.winner = winners.drop_duplicates("key").set_index("key")["code"]
        self.counts = table.set_index(["key", "code"])["n"]

    def _keys(self, df: pd.DataFrame) -> pd.Series:
        codes = pd.DataFrame({c.column.name: c.transform(df) for c in self.qi_coders})
        return pd.Series(pd.util.hash_pandas_object(codes, index=False).to_numpy())

    def judge(self, records: pd.DataFrame, marginal: np.ndarray) -> _Rates:
        if len(records) == 0:
            return _Rates(0.0, 0.0, 0.0)
        keys = self._keys(records)
        truth = self.target.transform(records)
        total = keys.map(self.totals).fillna(0).to_numpy()
        winner = keys.map(self.winner).fillna(-1).to_numpy()
        index = pd.MultiIndex.from_arrays([keys, truth])
        holding = self.counts.reindex(index).fillna(0).to_numpy()
        matched = total > 0
        correct = matched & (winner == truth)
        confidence = np.divide(holding, total, out=np.zeros(len(total)), where=matched)
        baseline = marginal[truth]
        meaningful = correct & (confidence > baseline)
        return _Rates(float(matched.mean()), float(correct.mean()), float(meaningful.mean()))
