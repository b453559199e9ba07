"""Coverage: do the real categories, and the rare ones especially, appear in the synthetic data?

A category is rare when its share of real rows is below the policy's `rare_share` (1%). It is
present in proportion when its synthetic share is within a factor of two of its real share.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedsynth.audit.columns import as_codes, is_discrete, labels
from fedsynth.audit.report import CoverageReport, RareCategory
from fedsynth.schema import Column

PROPORTION_FACTOR = 2.0


def coverage(
    real: pd.DataFrame, synthetic: pd.DataFrame, columns: list[Column], *, rare_share: float
) -> CoverageReport:
    """Category coverage and rare-category proportions over the discrete columns."""
    seen = 0
    covered = 0
    rare: list[RareCategory] = []
    for column in (c for c in columns if is_discrete(c)):
        names = labels(column)
        real_share = _shares(as_codes(real[column.name], column), len(names))
        syn_share = _shares(as_codes(synthetic[column.name], column), len(names))
        present = real_share > 0
        seen += int(present.sum())
        covered += int((present & (syn_share > 0)).sum())
        for code in np.flatnonzero(present & (real_share < rare_share)):
            rare.append(
                RareCategory(
                    column=column.name,
                    value=names[code],
                    real_share=float(real_share[code]),
                    synthetic_share=float(syn_share[code]),
                )
            )
    in_proportion = [
        r.real_share / PROPORTION_FACTOR <= r.synthetic_share <= r.real_share * PROPORTION_FACTOR
        for r in rare
    ]
    return CoverageReport(
        rare_threshold=rare_share,
        category_coverage=covered / seen if seen else None,
        rare_categories=rare,
        rare_present=float(np.mean([r.synthetic_share > 0 for r in rare])) if rare else None,
        rare_in_proportion=float(np.mean(in_proportion)) if rare else None,
    )


def _shares(codes: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(codes[codes >= 0], minlength=size) / max(len(codes), 1)
