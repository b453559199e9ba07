"""Record linkage at the broker, on tokens only: exact joins, then blocked Dice matching.

1. exact: rows whose `tok_record` is equal (and unique on each side) match with score 1;
2. candidates: pairs sharing any `blk_*` blocking token (blocks above `max_block_pairs`
   pairs are skipped and counted), so not all pairs are compared;
3. Dice coefficient of the `bf_record` Bloom filters for each candidate pair;
4. one-to-one assignment: greedily the best-scoring pair first, above `threshold`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from fedsynth.prep.harmonize import TOKEN_PREFIXES
from fedsynth.prep.tokens import BLOOM_COLUMN, RECORD_TOKEN, bloom_from_text

SOURCE_COLUMN = "source"
PERSON_COLUMN = "person_id"
_PAIR_CHUNK = 1 << 20

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total) while linking."""


class LinkageError(ValueError):
    """Two tables that cannot be linked; says which tokens are missing and how to get them."""


class LinkageReport(BaseModel):
    """What linking found: matches by method, ambiguity, unmatched rows, work done."""

    threshold: float
    left_rows: int
    right_rows: int
    exact_matches: int
    fuzzy_matches: int
    matches: int
    ambiguous: int = Field(description="Matched records with a rival candidate within the margin.")
    unmatched_left: int
    unmatched_right: int
    candidate_pairs: int
    skipped_blocks: int
    blocking_keys: list[str]
    seconds: float


@dataclass
class LinkResult:
    """Matched row positions (`left`, `right`), their score and method, and the report."""

    pairs: pd.DataFrame
    report: LinkageReport


class Linker:
    """Blocked, one-to-one Dice linker over linkage tokens (see module docstring)."""

    def __init__(
        self,
        threshold: float = 0.8,
        *,
        max_block_pairs: int = 250_000,
        ambiguity_margin: float = 0.02,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.max_block_pairs = max_block_pairs
        self.ambiguity_margin = ambiguity_margin

    def link(
        self, left: pd.DataFrame, right: pd.DataFrame, *, progress: Progress | None = None
    ) -> LinkResult:
        """Match rows of `left` to rows of `right`; both hold token columns from `tokenize`."""
        started = time.perf_counter()
        tell = progress or (lambda stage, done, total: None)
        blocking = sorted(c for c in set(left.columns) & set(right.columns) if c.startswith("blk_"))
        has_bloom = BLOOM_COLUMN in left.columns and BLOOM_COLUMN in right.columns
        has_exact = RECORD_TOKEN in left.columns and RECORD_TOKEN in right.columns
        if not has_exact and not (has_bloom and blocking):
            raise LinkageError(
                f"the tables share neither {RECORD_TOKEN!r} nor {BLOOM_COLUMN!r} with blocking "
                "keys 'blk_*'; prepare both sources with the same linkage spec"
            )
        exact = _exact_pairs(left, right) if has_exact else _empty_pairs()
        tell("exact", 1, 4)
        matched_left = np.zeros(len(left), dtype=bool)
        matched_right = np.zeros(len(right), dtype=bool)
        matched_left[exact["left"].to_numpy()] = True
        matched_right[exact["right"].to_numpy()] = True
        candidates, skipped = np.empty((0, 2), np.int64), 0
        fuzzy, ambiguous = _empty_pairs(), 0
        # A table with no rows matches no one: its Bloom column holds no filter to compare.
        if has_bloom and blocking and len(left) and len(right):
            candidates, skipped = self._candidates(left, right, blocking)
            keep = ~matched_left[candidates[:, 0]] & ~matched_right[candidates[:, 1]]
            candidates = candidates[keep]
            tell("blocking", 2, 4)
            scores = dice(
                bloom_from_text(left[BLOOM_COLUMN]),
                bloom_from_text(right[BLOOM_COLUMN]),
                candidates,
            )
            tell("scoring", 3, 4)
            fuzzy, ambiguous = self._assign(candidates, scores)
        pairs = pd.concat([exact, fuzzy], ignore_index=True)
        tell("assignment", 4, 4)
        report = LinkageReport(
            threshold=self.threshold,
            left_rows=len(left),
            right_rows=len(right),
            exact_matches=len(exact),
            fuzzy_matches=len(fuzzy),
            matches=len(pairs),
            ambiguous=ambiguous,
            unmatched_left=len(left) - len(pairs),
            unmatched_right=len(right) - len(pairs),
            candidate_pairs=len(candidates),
            skipped_blocks=skipped,
            blocking_keys=blocking,
            seconds=round(time.perf_counter() - started, 3),
        )
        return LinkResult(pairs, report)

    def _candidates(
        self, left: pd.DataFrame, right: pd.DataFrame, blocking: list[str]
    ) -> tuple[np.ndarray, int]:
        codes: list[np.ndarray] = []
        skipped = 0
        width = np.int64(len(right))
        for column in blocking:
            lk = pd.DataFrame({"k": left[column], "left": np.arange(len(left))}).dropna()
            rk = pd.DataFrame({"k": right[column], "right": np.arange(len(right))}).dropna()
            sizes = (
                lk["k"]
                .value_counts()
                .to_frame("l")
                .join(rk["k"].value_counts().to_frame("r"), how="inner")
            )
            too_big = sizes.index[(sizes["l"] * sizes["r"]) > self.max_block_pairs]
            skipped += len(too_big)
            if len(too_big):
                lk = lk[~lk["k"].isin(too_big)]
            joined = lk.merge(rk, on="k", how="inner")
            codes.append(joined["left"].to_numpy(np.int64) * width + joined["right"].to_numpy())
        unique = np.unique(np.concatenate(codes)) if codes else np.empty(0, np.int64)
        return np.stack([unique // width, unique % width], axis=1), skipped

    def _assign(self, candidates: np.ndarray, scores: np.ndarray) -> tuple[pd.DataFrame, int]:
        above = scores >= self.threshold
        cand, sc = candidates[above], scores[above]
        order = np.lexsort((cand[:, 1], cand[:, 0], -sc))
        used_left: set[int] = set()
        used_right: set[int] = set()
        chosen: list[int] = []
        for k in order.tolist():
            i, j = int(cand[k, 0]), int(cand[k, 1])
            if i in used_left or j in used_right:
                continue
            used_left.add(i)
            used_right.add(j)
            chosen.append(k)
        picked = np.array(chosen, dtype=np.int64)
        pairs = pd.DataFrame(
            {
                "left": cand[picked, 0] if len(picked) else np.empty(0, np.int64),
                "right": cand[picked, 1] if len(picked) else np.empty(0, np.int64),
                "score": sc[picked] if len(picked) else np.empty(0),
                "method": "fuzzy",
            }
        )
        return pairs, self._ambiguous(cand, sc, pairs)

    def _ambiguous(self, cand: np.ndarray, scores: np.ndarray, pairs: pd.DataFrame) -> int:
        """Matched pairs with another above-threshold candidate within the margin of their score."""
        if pairs.empty:
            return 0
        frame = pd.DataFrame({"left": cand[:, 0], "right": cand[:, 1], "score": scores})
        best_left = pairs.set_index("left")["score"]
        best_right = pairs.set_index("right")["score"]
        rivals = frame.merge(pairs[["left", "right"]], how="left", indicator=True)
        rivals = rivals[rivals["_merge"] == "left_only"]
        near_left = rivals["left"].map(best_left) - rivals["score"] <= self.ambiguity_margin
        near_right = rivals["right"].map(best_right) - rivals["score"] <= self.ambiguity_margin
        flagged = set(rivals.loc[near_left.fillna(False), "left"].tolist())
        right_flags = set(rivals.loc[near_right.fillna(False), "right"].tolist())
        return int(
            pairs["left"].isin(flagged).to_numpy().sum()
            + (pairs["right"].isin(right_flags) & ~pairs["left"].isin(flagged)).to_numpy().sum()
        )


def dice(left: np.ndarray, right: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Dice coefficient 2|A and B| / (|A| + |B|) of packed Bloom filters for each pair of rows."""
    if left.shape[1] != right.shape[1]:
        raise LinkageError(
            f"Bloom filters differ in length ({left.shape[1] * 8} vs {right.shape[1] * 8} bits); "
            "prepare both sources with the same linkage.bloom settings"
        )
    lw, rw = _words(left), _words(right)
    left_bits = np.bitwise_count(lw).sum(axis=1, dtype=np.int64)
    right_bits = np.bitwise_count(rw).sum(axis=1, dtype=np.int64)
    out = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), _PAIR_CHUNK):
        chunk = pairs[start : start + _PAIR_CHUNK]
        li, ri = chunk[:, 0], chunk[:, 1]
        common = np.bitwise_count(lw[li] & rw[ri]).sum(axis=1, dtype=np.int64)
        total = left_bits[li] + right_bits[ri]
        out[start : start + len(chunk)] = np.divide(
            2.0 * common, total, out=np.zeros(len(chunk)), where=total > 0
        )
    return out


def linked_table(
    left: pd.DataFrame,
    right: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    names: tuple[str, str] = ("left", "right"),
) -> pd.DataFrame:
    """One row per matched pair: both sources' attributes side by side (tokens left out).

    A column both sources hold gets the source name as suffix (`weight_a`, `weight_b`).
    """
    a, b = _attributes(left), _attributes(right)
    shared = set(a.columns) & set(b.columns)
    a = a.rename(columns={c: f"{c}_{names[0]}" for c in shared})
    b = b.rename(columns={c: f"{c}_{names[1]}" for c in shared})
    rows_a = a.iloc[pairs["left"].to_numpy()].reset_index(drop=True)
    rows_b = b.iloc[pairs["right"].to_numpy()].reset_index(drop=True)
    scores = pairs[["score", "method"]].reset_index(drop=True)
    scores.columns = ["link_score", "link_method"]
    return pd.concat([rows_a, rows_b, scores], axis=1)


def stacked_table(
    tables: Mapping[str, pd.DataFrame],
    person_ids: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Rows of horizontal sources one under another with a `source` column (tokens left out).

    With `person_ids` (from `person_ids_for`), rows of one person share a `person_id`.
    """
    parts = []
    for name, table in tables.items():
        part = _attributes(table).reset_index(drop=True)
        part.insert(0, SOURCE_COLUMN, name)
        if person_ids is not None:
            part.insert(1, PERSON_COLUMN, person_ids[name])
        parts.append(part)
    columns = list(dict.fromkeys(c for part in parts for c in part.columns))
    # pandas deprecates empty frames in concat (an empty source's dtypes would decide the result).
    filled = [part for part in parts if len(part)] or parts
    return pd.concat(filled, ignore_index=True).reindex(columns=columns)


def person_ids_for(
    n_left: int, n_right: int, pairs: pd.DataFrame, names: tuple[str, str]
) -> dict[str, np.ndarray]:
    """A person number per row of two linked tables: matched rows share one."""
    left_ids = np.arange(n_left, dtype=np.int64)
    right_ids = np.arange(n_left, n_left + n_right, dtype=np.int64)
    right_ids[pairs["right"].to_numpy()] = left_ids[pairs["left"].to_numpy()]
    return {names[0]: left_ids, names[1]: right_ids}


def _attributes(table: pd.DataFrame) -> pd.DataFrame:
    return table[[c for c in table.columns if not c.startswith(TOKEN_PREFIXES)]]


def _words(packed: np.ndarray) -> np.ndarray:
    if packed.shape[1] % 8:
        raise LinkageError(
            f"Bloom filters of {packed.shape[1]} bytes are not a multiple of 64 bits"
        )
    return np.ascontiguousarray(packed).view(np.uint64)


def _exact_pairs(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    lk = pd.DataFrame({"k": left[RECORD_TOKEN], "left": np.arange(len(left))}).dropna()
    rk = pd.DataFrame({"k": right[RECORD_TOKEN], "right": np.arange(len(right))}).dropna()
    lk = lk[~lk["k"].duplicated(keep=False)]
    rk = rk[~rk["k"].duplicated(keep=False)]
    joined = lk.merge(rk, on="k", how="inner")
    return pd.DataFrame(
        {
            "left": joined["left"].to_numpy(np.int64),
            "right": joined["right"].to_numpy(np.int64),
            "score": 1.0,
            "method": "exact",
        }
    )


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "left": np.empty(0, np.int64),
            "right": np.empty(0, np.int64),
            "score": np.empty(0),
            "method": pd.Series([], dtype=object),
        }
    )
