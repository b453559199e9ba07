"""Fidelity: column shapes and column-pair trends, defined exactly as SDMetrics defines them.

KSComplement (continuous) and TVComplement (discrete) per column; CorrelationSimilarity (Pearson)
for two continuous columns and ContingencySimilarity for any other pair, continuous columns cut
into SDMetrics' 10 equal-width bins of the real values. Scores are averaged like SDMetrics'
Quality Report: the mean over columns, the mean over pairs, and the mean of the two.
BoundaryAdherence (from SDMetrics' Diagnostic Report) is reported beside them, per continuous
column and as a mean, since KS alone hardly moves when a few values leave the real range.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from fedsynth.audit.columns import as_codes, as_float, is_discrete, labels
from fedsynth.audit.report import (
    ColumnShape,
    CorrelationMatrices,
    Distribution,
    FidelityReport,
    PairTrend,
)
from fedsynth.schema import Column, DatetimeColumn

KS_DECIMALS = 14
CONTINGENCY_BINS = 10
OVERLAY_BINS = 20
MISSING_LABEL = "(missing)"


def ks_complement(real: np.ndarray, synthetic: np.ndarray) -> float | None:
    """1 - the two-sample Kolmogorov-Smirnov statistic over non-missing values; None if empty."""
    r = np.sort(np.round(real[~np.isnan(real)], KS_DECIMALS))
    s = np.sort(np.round(synthetic[~np.isnan(synthetic)], KS_DECIMALS))
    if len(r) == 0 or len(s) == 0:
        return None
    points = np.concatenate([r, s])
    cdf_r = np.searchsorted(r, points, side="right") / len(r)
    cdf_s = np.searchsorted(s, points, side="right") / len(s)
    return float(1.0 - np.max(np.abs(cdf_r - cdf_s)))


def tv_complement(real: np.ndarray, synthetic: np.ndarray) -> float | None:
    """1 - total variation distance of the non-missing label frequencies (codes, -1 = missing)."""
    r = real[real >= 0]
    s = synthetic[synthetic >= 0]
    if len(r) == 0 or len(s) == 0:
        return None
    size = int(max(r.max(), s.max())) + 1
    p = np.bincount(r, minlength=size) / len(r)
    q = np.bincount(s, minlength=size) / len(s)
    return float(1.0 - 0.5 * np.abs(p - q).sum())


def boundary_adherence(real: np.ndarray, synthetic: np.ndarray) -> float | None:
    """Share of synthetic values within the real [min, max], as SDMetrics' BoundaryAdherence.

    Missing synthetic values are left out when the real column has missing values too, and count
    as outside when it has none; None when either side has no value to compare.
    """
    present = real[~np.isnan(real)]
    checked = synthetic[~np.isnan(synthetic)] if len(present) < len(real) else synthetic
    if len(present) == 0 or len(checked) == 0:
        return None
    inside = (checked >= present.min()) & (checked <= present.max())
    return float(inside.mean())


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation over rows where both are present; None if undefined."""
    keep = ~(np.isnan(x) | np.isnan(y))
    if keep.sum() < 2:
        return None
    a = x[keep] - x[keep].mean()
    b = y[keep] - y[keep].mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    if denominator == 0:
        return None
    return float(np.clip((a * b).sum() / denominator, -1.0, 1.0))


def correlation_similarity(
    real: tuple[np.ndarray, np.ndarray], synthetic: tuple[np.ndarray, np.ndarray]
) -> tuple[float | None, float | None, float | None]:
    """(1 - |r_real - r_synthetic| / 2, r_real, r_synthetic); score None if either is undefined."""
    r_real = pearson(*real)
    r_syn = pearson(*synthetic)
    if r_real is None or r_syn is None:
        return None, r_real, r_syn
    return 1.0 - abs(r_real - r_syn) / 2.0, r_real, r_syn


def bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """`bins` equal-width edges over non-empty finite `values`, as numpy draws them.

    Numpy widens a constant to +-0.5, which leaves no room for distinct float edges at the
    magnitude of microsecond timestamps (a one-day extract); such a narrow range is widened
    around its centre to a few float steps per bin instead.
    """
    try:
        return np.histogram_bin_edges(values, bins=bins)
    except ValueError:
        centre = (float(values.min()) + float(values.max())) / 2
        half = 2 * bins * np.spacing(abs(centre))
        return np.linspace(centre - half, centre + half, bins + 1)


def discretize(real: np.ndarray, synthetic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SDMetrics' binning: 10 equal-width bins of the real values, open outer edges."""
    present = real[~np.isnan(real)]
    if len(present) == 0:
        present = np.zeros(1)
    edges = bin_edges(present, CONTINGENCY_BINS)
    edges[0], edges[-1] = -np.inf, np.inf
    return np.digitize(real, edges), np.digitize(synthetic, edges)


def contingency_similarity(
    real: tuple[np.ndarray, np.ndarray], synthetic: tuple[np.ndarray, np.ndarray]
) -> float:
    """1 - total variation distance of the joint frequencies of two non-negative code arrays."""
    width = int(max(real[1].max(initial=0), synthetic[1].max(initial=0))) + 1
    size = int(max(real[0].max(initial=0), synthetic[0].max(initial=0)) + 1) * width
    p = np.bincount(real[0] * width + real[1], minlength=size) / max(len(real[0]), 1)
    q = np.bincount(synthetic[0] * width + synthetic[1], minlength=size) / max(len(synthetic[0]), 1)
    return float(1.0 - 0.5 * np.abs(p - q).sum())


def fidelity(real: pd.DataFrame, synthetic: pd.DataFrame, columns: list[Column]) -> FidelityReport:
    """Column shapes, pair trends and correlation matrices of `synthetic` against `real`."""
    views = {c.name: _View(real[c.name], synthetic[c.name], c) for c in columns}
    shapes = [_shape(views[c.name]) for c in columns]
    pairs = [_pair(views[a.name], views[b.name]) for a, b in combinations(columns, 2)]
    shape_mean = _mean([s.score for s in shapes])
    pair_mean = _mean([p.score for p in pairs])
    overall = _mean([shape_mean, pair_mean])
    continuous = [c.name for c in columns if not is_discrete(c)]
    return FidelityReport(
        column_shapes=shape_mean,
        pair_trends=pair_mean,
        overall=overall,
        columns=shapes,
        pairs=pairs,
        correlations=CorrelationMatrices(
            columns=continuous,
            real=_matrix([views[n].real_values for n in continuous]),
            synthetic=_matrix([views[n].synthetic_values for n in continuous]),
        ),
        boundary_adherence=_mean([s.boundary_adherence for s in shapes]),
    )


class _View:
    """One column's real and synthetic values, as floats or codes by kind."""

    def __init__(self, real: pd.Series, synthetic: pd.Series, column: Column) -> None:
        self.column = column
        convert = as_codes if is_discrete(column) else as_float
        self.real_values = convert(real, column)
        self.synthetic_values = convert(synthetic, column)

    def binned(self) -> tuple[np.ndarray, np.ndarray]:
        """Non-negative codes for contingency tables (missing gets its own code)."""
        if is_discrete(self.column):
            return self.real_values + 1, self.synthetic_values + 1
        return discretize(self.real_values, self.synthetic_values)


def _shape(view: _View) -> ColumnShape:
    column = view.column
    if is_discrete(column):
        return ColumnShape(
            column=column.name,
            kind=column.kind,
            metric="TVComplement",
            score=tv_complement(view.real_values, view.synthetic_values),
            distribution=_label_distribution(view),
        )
    return ColumnShape(
        column=column.name,
        kind=column.kind,
        metric="KSComplement",
        score=ks_complement(view.real_values, view.synthetic_values),
        distribution=_binned_distribution(view),
        boundary_adherence=boundary_adherence(view.real_values, view.synthetic_values),
        real_range=_range(view.real_values, column),
        synthetic_range=_range(view.synthetic_values, column),
    )


def _pair(a: _View, b: _View) -> PairTrend:
    names = (a.column.name, b.column.name)
    if not is_discrete(a.column) and not is_discrete(b.column):
        score, r_real, r_syn = correlation_similarity(
            (a.real_values, b.real_values), (a.synthetic_values, b.synthetic_values)
        )
        return PairTrend(
            columns=names,
            metric="CorrelationSimilarity",
            score=score,
            real_correlation=r_real,
            synthetic_correlation=r_syn,
        )
    real_a, syn_a = a.binned()
    real_b, syn_b = b.binned()
    score = contingency_similarity((real_a, real_b), (syn_a, syn_b))
    return PairTrend(columns=names, metric="ContingencySimilarity", score=score)


def _label_distribution(view: _View) -> Distribution:
    names = labels(view.column)
    size = len(names) + 1
    real = np.bincount(view.real_values + 1, minlength=size) / max(len(view.real_values), 1)
    syn = np.bincount(view.synthetic_values + 1, minlength=size) / max(
        len(view.synthetic_values), 1
    )
    shown = [MISSING_LABEL, *names]
    if real[0] == 0 and syn[0] == 0:
        shown, real, syn = names, real[1:], syn[1:]
    return Distribution(labels=shown, real=real.tolist(), synthetic=syn.tolist())


def _binned_distribution(view: _View) -> Distribution:
    """Shares in equal-width bins over the real range (the synthetic one if no real value is
    present); synthetic values beyond it are counted apart, never folded into the outer bins."""
    real = view.real_values[~np.isnan(view.real_values)]
    syn = view.synthetic_values[~np.isnan(view.synthetic_values)]
    spanned = real if len(real) else syn if len(syn) else np.zeros(1)
    edges = bin_edges(spanned, OVERLAY_BINS)
    below = syn < spanned.min()
    above = syn > spanned.max()
    shares = max(len(syn), 1)
    real_counts = np.histogram(real, bins=edges)[0] / max(len(real), 1)
    syn_counts = np.histogram(syn[~(below | above)], bins=edges)[0] / shares
    return Distribution(
        labels=[_edge_label(e, view.column) for e in edges],
        edges=edges.tolist(),
        real=real_counts.tolist(),
        synthetic=syn_counts.tolist(),
        synthetic_below=float(below.sum() / shares),
        synthetic_above=float(above.sum() / shares),
    )


def _range(values: np.ndarray, column: Column) -> tuple[str, str] | None:
    """The least and greatest present value as text; None when every value is missing."""
    present = values[~np.isnan(values)]
    if len(present) == 0:
        return None
    return _edge_label(float(present.min()), column), _edge_label(float(present.max()), column)


def _edge_label(edge: float, column: Column) -> str:
    if isinstance(column, DatetimeColumn):
        return str(np.datetime64(int(edge), "us").astype("datetime64[s]"))
    return f"{edge:.4g}"


def _matrix(values: list[np.ndarray]) -> list[list[float | None]]:
    return [[pearson(x, y) for y in values] for x in values]


def _mean(scores: list[float | None]) -> float | None:
    present = [s for s in scores if s is not None]
    return float(np.mean(present)) if present else None
