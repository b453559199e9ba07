"""What a DP model may know without spending budget: only what the public schema says.

The generic `Synthesizer.fit` reads output rounding and learned constraints from the real rows;
a DP model must not, so DP models take both from here instead.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd

from fedsynth.frame import conform
from fedsynth.privacy.accountant import PrivacyCost, zcdp_cost
from fedsynth.schema import DatetimeColumn, NumericalColumn, TableSchema
from fedsynth.synth.base import Progress
from fedsynth.synth.constraints import ConstraintBase, ConstraintError, parse_constraints
from fedsynth.synth.encoding import MAX_DECIMALS

DEFAULT_FLOAT_DECIMALS = MAX_DECIMALS
SECONDS_PER_DAY = 86400.0


def project_counts(counts: np.ndarray, total: float) -> np.ndarray:
    """The closest non-negative counts (Euclidean) that sum to `total`: noise below a cut is 0.

    Clipping noisy counts at zero instead keeps the positive half of every empty cell's noise,
    which, over many cells, piles up into mass the data never had.
    """
    flat = counts.ravel()
    ordered = np.sort(flat)[::-1]
    excess = (np.cumsum(ordered) - total) / np.arange(1, flat.size + 1)
    cut = excess[np.nonzero(ordered > excess)[0][-1]]
    return np.maximum(counts - cut, 0.0)


def public_rounding(schema: TableSchema) -> dict[str, float]:
    """Output rounding per modelled column from the schema alone.

    Numerical: the declared `decimals` (0 for integers, MAX_DECIMALS when undeclared).
    Datetime: whole days where the declared format has no time of day, else whole seconds.
    Discrete columns: 0.
    """
    out = {}
    for column in schema.modelled_columns:
        if isinstance(column, NumericalColumn):
            if column.dtype == "int":
                out[column.name] = 0.0
            else:
                decimals = column.decimals
                out[column.name] = float(DEFAULT_FLOAT_DECIMALS if decimals is None else decimals)
        elif isinstance(column, DatetimeColumn):
            out[column.name] = SECONDS_PER_DAY if column.whole_days else 1.0
        else:
            out[column.name] = 0.0
    return out


def public_constraints(items: list[Any], schema: TableSchema) -> list[ConstraintBase]:
    """Constraints checked against the schema; any that would learn from real rows is refused."""
    bound = []
    for constraint in parse_constraints(items):
        constraint = constraint.bind(schema)
        if (
            type(constraint).learn is not ConstraintBase.learn
            and getattr(constraint, "combinations", None) is None
        ):
            raise ConstraintError(
                f"{constraint.label}: learns from real rows, which a DP model must not read "
                "outside its privacy budget; declare what it would learn (e.g. 'combinations')"
            )
        bound.append(constraint)
    return bound


def round_costs_of(name: str, rhos: list[float]) -> list[PrivacyCost]:
    """zCDP costs of rounds whose sensitivity-1 queries share the given rhos."""
    return [zcdp_cost(rho, label=f"{name} round {n}") for n, rho in enumerate(rhos, start=1)]


class RoundsCentralFit:
    """Central fit of a DP model measured in rounds: every round on one table, whole noise.

    Mixed in before the model's base class; the model provides `start` (which sets `rounds_`),
    `measure` and `absorb` (the same protocol federated fitting drives round by round across
    suppliers).
    Unlike the generic fit, rounding and constraints come from the schema, not the rows.
    """

    def fit(
        self, df: pd.DataFrame, schema: TableSchema, *, progress: Progress | None = None
    ) -> Self:
        df = conform(df, schema).reset_index(drop=True)
        if len(df) == 0:
            raise ValueError("cannot fit a synthesizer on a table without rows")
        self.start(schema)  # type: ignore[attr-defined]
        self._fit(df, schema, progress)
        return self

    def _fit(self, df: pd.DataFrame, schema: TableSchema, progress: Progress | None) -> None:
        rounds = self.rounds_  # type: ignore[attr-defined]
        for step in range(1, rounds + 1):
            self.absorb(self.measure(df))  # type: ignore[attr-defined]
            if progress is not None:
                progress(step, rounds)
