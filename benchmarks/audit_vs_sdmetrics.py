"""The four fidelity metrics shared with SDMetrics, computed by both on the same tables.

KSComplement (numerical and datetime columns), TVComplement (categorical and boolean columns),
CorrelationSimilarity (pairs of numerical/datetime columns) and ContingencySimilarity (every other
pair, continuous columns binned the SDMetrics way) from `sdmetrics` and from
`fedsynth.audit.fidelity`, in one run. Reports the largest absolute difference over all scores
(target: below 1e-6) and the speed ratio. 2% of two columns' cells are missing, so missing-value
handling is compared too. Needs sdmetrics (benchmark extra).

    python benchmarks/audit_vs_sdmetrics.py [--rows 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
from sdmetrics.single_column import BoundaryAdherence, KSComplement, TVComplement

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_results
from benchmarks.audit_speed import SCHEMA, generate
from fedsynth.audit.columns import is_discrete
from fedsynth.audit.fidelity import fidelity
from fedsynth.schema import DatetimeColumn

TARGET_DIFFERENCE = 1e-6
MISSING_COLUMNS = ("score", "plan")


def with_missing(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = df.copy()
    for name in MISSING_COLUMNS:
        out.loc[rng.random(len(out)) < 0.02, name] = None
    return out


def plain(df: pd.DataFrame) -> pd.DataFrame:
    """Plain dtypes SDMetrics works with: floats, objects, datetime64."""
    out = {}
    for column in SCHEMA.columns:
        series = df[column.name]
        if isinstance(series.dtype, pd.CategoricalDtype) or str(series.dtype) == "boolean":
            out[column.name] = series.astype(object).where(series.notna(), np.nan)
        elif isinstance(column, DatetimeColumn):
            out[column.name] = series
        else:
            out[column.name] = series.astype("float64")
    return pd.DataFrame(out)


def as_number(series: pd.Series) -> pd.Series:
    """Datetimes as microseconds for SDMetrics' binning of mixed pairs (bins need numbers)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return series.astype("int64").astype("float64").where(series.notna(), np.nan)
    return series


def sdmetrics_scores(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, float]:
    scores: dict[str, float] = {}
    for column in SCHEMA.columns:
        metric = TVComplement if is_discrete(column) else KSComplement
        scores[column.name] = float(metric.compute(real[column.name], synthetic[column.name]))
        if not is_discrete(column):
            scores[f"{column.name}#bounds"] = float(
                BoundaryAdherence.compute(
                    as_number(real[column.name]), as_number(synthetic[column.name])
                )
            )
    for a, b in combinations(SCHEMA.columns, 2):
        key = f"{a.name}|{b.name}"
        pair = [a.name, b.name]
        if not is_discrete(a) and not is_discrete(b):
            scores[key] = float(CorrelationSimilarity.compute(real[pair], synthetic[pair]))
            continue
        continuous = [c.name for c in (a, b) if not is_discrete(c)]
        real_pair = real[pair].apply(as_number)
        syn_pair = synthetic[pair].apply(as_number)
        scores[key] = float(
            ContingencySimilarity.compute(
                real_pair, syn_pair, continuous_column_names=continuous or None
            )
        )
    return scores


def our_scores(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, float]:
    report = fidelity(real, synthetic, SCHEMA.columns)
    scores = {s.column: s.score for s in report.columns}
    scores.update(
        {f"{s.column}#bounds": s.boundary_adherence for s in report.columns if s.real_range}
    )
    scores.update({f"{p.columns[0]}|{p.columns[1]}": p.score for p in report.pairs})
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    real = with_missing(generate(args.rows, seed=1), seed=11)
    synthetic = with_missing(generate(args.rows, seed=2), seed=12)
    start = time.perf_counter()
    ours = our_scores(real, synthetic)
    ours_seconds = time.perf_counter() - start
    real_plain, syn_plain = plain(real), plain(synthetic)
    start = time.perf_counter()
    theirs = sdmetrics_scores(real_plain, syn_plain)
    theirs_seconds = time.perf_counter() - start
    families = {
        "KSComplement": [c.name for c in SCHEMA.columns if not is_discrete(c)],
        "TVComplement": [c.name for c in SCHEMA.columns if is_discrete(c)],
        "CorrelationSimilarity": [
            f"{a.name}|{b.name}"
            for a, b in combinations(SCHEMA.columns, 2)
            if not is_discrete(a) and not is_discrete(b)
        ],
    }
    families["BoundaryAdherence"] = [k for k in theirs if k.endswith("#bounds")]
    families["ContingencySimilarity"] = [
        k for k in theirs if "|" in k and k not in families["CorrelationSimilarity"]
    ]
    rows = []
    print(f"{'metric':<24}{'scores':>8}{'max |ours - SDMetrics|':>26}{'mean ours':>12}")
    for name, keys in families.items():
        diff = max(abs(ours[k] - theirs[k]) for k in keys)
        mean = float(np.mean([ours[k] for k in keys]))
        rows.append({"metric": name, "scores": len(keys), "max_abs_difference": diff, "mean": mean})
        print(f"{name:<24}{len(keys):>8}{diff:>26.3e}{mean:>12.4f}")
    worst = max(r["max_abs_difference"] for r in rows)
    ratio = theirs_seconds / ours_seconds
    print(f"largest difference {worst:.3e} (target < {TARGET_DIFFERENCE:g})")
    print(
        f"time: SDMetrics {theirs_seconds:.2f} s, fedsynth {ours_seconds:.2f} s, ratio {ratio:.1f}x"
    )
    path = write_results(
        "audit_vs_sdmetrics",
        {
            "rows": args.rows,
            "columns": len(SCHEMA.columns),
            "metrics": rows,
            "largest_difference": worst,
            "target_difference": TARGET_DIFFERENCE,
            "sdmetrics_seconds": theirs_seconds,
            "fedsynth_seconds": ours_seconds,
            "speed_ratio": ratio,
        },
    )
    print(f"results: {path}")
    return 0 if worst < TARGET_DIFFERENCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
