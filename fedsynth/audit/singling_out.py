"""Singling out: do predicates read off synthetic rows isolate exactly one real person?

Each predicate takes a synthetic row and up to three random columns (quasi-identifiers when
declared): equality for labels, and for numbers `<= value` below the training median or
`>= value` above it, so extreme synthetic values make narrow predicates. The success rate on
training rows is compared with the rate on an equal-size holdout, which the synthesizer never saw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedsynth.audit.columns import as_codes, as_float, is_discrete
from fedsynth.audit.report import SinglingOut
from fedsynth.audit.sampling import equal_size_pair, sample_rows
from fedsynth.schema import Column

PREDICATE_COLUMNS = 3


def singling_out(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame | None,
    columns: list[Column],
    *,
    predicates: int,
    max_reference: int,
    rng: np.random.Generator,
) -> SinglingOut:
    """Share of synthetic-derived predicates matching exactly one training (and holdout) row."""
    if holdout is None:
        reference, control = sample_rows(train, max_reference, rng), None
    else:
        reference, control = equal_size_pair(train, holdout, max_reference, rng)
    sources = sample_rows(synthetic, predicates, rng)
    medians = {
        c.name: float(np.nanmedian(as_float(train[c.name], c)))
        for c in columns
        if not is_discrete(c) and train[c.name].notna().any()
    }
    values = {c.name: _values(sources, c) for c in columns}
    ref_values = {c.name: _values(reference, c) for c in columns}
    control_values = None if control is None else {c.name: _values(control, c) for c in columns}
    width = min(PREDICATE_COLUMNS, len(columns))
    hits = np.zeros(len(sources), dtype=bool)
    control_hits = np.zeros(len(sources), dtype=bool)
    for row in range(len(sources)):
        chosen = [columns[i] for i in rng.choice(len(columns), size=width, replace=False)]
        conditions = [(c, values[c.name][row]) for c in chosen]
        hits[row] = _matches(ref_values, conditions, medians) == 1
        if control_values is not None:
            control_hits[row] = _matches(control_values, conditions, medians) == 1
    return SinglingOut(
        predicates=len(sources),
        columns=[c.name for c in columns],
        reference_rows=len(reference),
        success_rate=float(hits.mean()) if len(hits) else 0.0,
        holdout_success_rate=(
            None if control is None else (float(control_hits.mean()) if len(hits) else 0.0)
        ),
    )


def _values(df: pd.DataFrame, column: Column) -> np.ndarray:
    if is_discrete(column):
        return as_codes(df[column.name], column).astype(np.float64)
    return as_float(df[column.name], column)


def _matches(
    table: dict[str, np.ndarray],
    conditions: list[tuple[Column, float]],
    medians: dict[str, float],
) -> int:
    mask: np.ndarray | None = None
    for column, value in conditions:
        data = table[column.name]
        if is_discrete(column):
            part = data == value
        elif np.isnan(value):
            part = np.isnan(data)
        elif value <= medians.get(column.name, value):
            part = data <= value
        else:
            part = data >= value
        mask = part if mask is None else mask & part
    return int(mask.sum()) if mask is not None else 0
