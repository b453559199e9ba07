"""Full audit time on 100,000 real x 100,000 synthetic rows with 20 mixed columns (target: < 60 s).

Times `fedsynth.audit.run` (validity, fidelity, detection, utility, every privacy measure,
coverage) plus the HTML report, next to SDMetrics' QualityReport (fidelity only) on the same
tables in the same run when sdmetrics is installed. The synthetic table is an independent draw
of the generating process, and a 25,000-row holdout is audited against as well. The pair-trend
aggregates differ by design: SDMetrics' QualityReport bins each synthetic continuous column on
its own range, while its ContingencySimilarity metric (which ours matches to 1e-16, see
audit_vs_sdmetrics.py) bins both tables on the real range.

    python benchmarks/audit_speed.py [--rows 100000] [--holdout 25000]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_results
from fedsynth.audit import run
from fedsynth.audit.html import render_html
from fedsynth.frame import conform
from fedsynth.schema import (
    BooleanColumn,
    CategoricalColumn,
    DatetimeColumn,
    NumericalColumn,
    PrivacyRole,
    TableSchema,
)

LIMIT_SECONDS = 60.0
QI = PrivacyRole.QUASI_IDENTIFIER
SENSITIVE = PrivacyRole.SENSITIVE
SCHEMA = TableSchema(
    name="audit_bench",
    columns=[
        NumericalColumn(name="age", dtype="int", min=0, max=120, role=QI),
        CategoricalColumn(name="sex", domain=["female", "male"], role=QI),
        CategoricalColumn(name="region", domain=[f"R{i:02d}" for i in range(20)], role=QI),
        NumericalColumn(name="weight", min=1, max=400),
        NumericalColumn(name="height", min=30, max=250),
        NumericalColumn(name="income", min=0),
        NumericalColumn(name="visits", dtype="int", min=0),
        NumericalColumn(name="score"),
        NumericalColumn(name="balance"),
        NumericalColumn(name="days", dtype="int", min=0),
        DatetimeColumn(name="admitted"),
        DatetimeColumn(name="born"),
        CategoricalColumn(
            name="diagnosis", domain=[f"D{i:02d}" for i in range(50)], role=SENSITIVE
        ),
        CategoricalColumn(name="grade", domain=["a", "b", "c", "d"]),
        CategoricalColumn(name="plan", domain=["basic", "plus", "premium"]),
        CategoricalColumn(name="channel", domain=["web", "phone", "branch", "mail", "rare"]),
        CategoricalColumn(name="status", domain=["open", "closed"]),
        BooleanColumn(name="smoker"),
        BooleanColumn(name="insured"),
        BooleanColumn(name="readmitted"),
    ],
)


def generate(rows: int, seed: int) -> pd.DataFrame:
    """`rows` rows of a process with two latent factors driving most columns."""
    rng = np.random.default_rng(seed)
    z, w = rng.normal(size=(2, rows))
    noise = rng.normal(size=(12, rows))
    age = np.clip(np.round(50 + 15 * z + 4 * noise[0]), 0, 120)
    grade_cut = np.digitize(z + 0.5 * noise[8], [-0.7, 0.0, 0.7])
    df = pd.DataFrame(
        {
            "age": age,
            "sex": rng.choice(["female", "male"], size=rows),
            "region": rng.choice([f"R{i:02d}" for i in range(20)], size=rows),
            "weight": np.clip(75 + 12 * w + 4 * noise[1], 1, 400),
            "height": np.clip(170 + 8 * w + 5 * noise[2], 30, 250),
            "income": np.exp(10 + 0.4 * z + 0.3 * noise[3]),
            "visits": rng.poisson(np.exp(0.5 + 0.4 * z)),
            "score": 2 * z - w + noise[4],
            "balance": 1000 * w + 300 * noise[5],
            "days": rng.poisson(5 + 2 * np.abs(z)),
            "admitted": pd.Timestamp("2021-01-01")
            + pd.to_timedelta(np.round((90 * w + 20 * noise[6]) * 86400), unit="s"),
            "born": pd.Timestamp("2021-01-01")
            - pd.to_timedelta(np.round(age * 365.25 * 86400), unit="s"),
            "diagnosis": np.array([f"D{i:02d}" for i in range(50)])[
                np.clip(np.round(25 + 10 * z + 5 * noise[7]), 0, 49).astype(int)
            ],
            "grade": np.array(["a", "b", "c", "d"])[grade_cut],
            "plan": rng.choice(["basic", "plus", "premium"], p=[0.6, 0.3, 0.1], size=rows),
            "channel": rng.choice(
                ["web", "phone", "branch", "mail", "rare"],
                p=[0.5, 0.3, 0.15, 0.045, 0.005],
                size=rows,
            ),
            "status": np.where(w + noise[9] > 0, "open", "closed"),
            "smoker": z + noise[10] > 0.5,
            "insured": w + noise[11] > -0.5,
            "readmitted": rng.random(rows) < 0.1,
        }
    )
    return conform(df, SCHEMA)


def time_ours(real: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame) -> dict:
    start = time.perf_counter()
    report = run(real, synthetic, SCHEMA, holdout=holdout, target="grade")
    audited = time.perf_counter()
    page = render_html(report)
    done = time.perf_counter()
    return {
        "audit_seconds": audited - start,
        "html_seconds": done - audited,
        "total_seconds": done - start,
        "verdict": report.verdict,
        "failed_checks": [c.name for c in report.failed_checks],
        "html_bytes": len(page),
        "column_shapes": report.fidelity.column_shapes,
        "pair_trends": report.fidelity.pair_trends,
    }


def time_sdmetrics_quality(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            from sdmetrics.reports.single_table import QualityReport
    except ImportError:
        return None
    metadata = {"columns": {c.name: {"sdtype": _sdtype(c.kind)} for c in SCHEMA.columns}}
    real_plain, syn_plain = _plain(real), _plain(synthetic)
    start = time.perf_counter()
    report = QualityReport()
    report.generate(real_plain, syn_plain, metadata, verbose=False)
    seconds = time.perf_counter() - start
    properties = report.get_properties().set_index("Property")["Score"]
    return {
        "seconds": seconds,
        "column_shapes": float(properties["Column Shapes"]),
        "pair_trends": float(properties["Column Pair Trends"]),
    }


def _sdtype(kind: str) -> str:
    return {"numerical": "numerical", "datetime": "datetime", "boolean": "boolean"}.get(
        kind, "categorical"
    )


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Plain numpy dtypes, as SDMetrics expects (no pandas nullable extension types)."""
    out = df.copy()
    for name in out.columns:
        if isinstance(out[name].dtype, pd.CategoricalDtype):
            out[name] = out[name].astype(object)
        elif str(out[name].dtype) in ("Int64", "boolean"):
            out[name] = out[name].astype("float64" if str(out[name].dtype) == "Int64" else object)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--holdout", type=int, default=25_000)
    args = parser.parse_args()
    real = generate(args.rows, seed=1)
    synthetic = generate(args.rows, seed=2)
    holdout = generate(args.holdout, seed=3)
    ours = time_ours(real, synthetic, holdout)
    peer = time_sdmetrics_quality(real, synthetic)
    print(f"{'measure':<42}{'value':>14}")
    print(f"{'rows real / synthetic / holdout':<42}{f'{args.rows}/{args.rows}/{args.holdout}':>14}")
    print(f"{'fedsynth full audit (s)':<42}{ours['audit_seconds']:>14.2f}")
    print(f"{'fedsynth HTML report (s)':<42}{ours['html_seconds']:>14.2f}")
    print(f"{'fedsynth total (s), limit 60':<42}{ours['total_seconds']:>14.2f}")
    print(f"{'verdict (independent draw)':<42}{ours['verdict']:>14}")
    if peer is not None:
        print(f"{'SDMetrics QualityReport, fidelity only (s)':<42}{peer['seconds']:>14.2f}")
        ratio = peer["seconds"] / ours["total_seconds"]
        print(f"{'SDMetrics fidelity / fedsynth full audit':<42}{ratio:>14.2f}")
        print(
            f"{'column shapes ours / SDMetrics':<42}"
            f"{ours['column_shapes']:>7.4f}/{peer['column_shapes']:.4f}"
        )
        print(
            f"{'pair trends ours / SDMetrics':<42}"
            f"{ours['pair_trends']:>7.4f}/{peer['pair_trends']:.4f}"
        )
    path = write_results(
        "audit_speed",
        {
            "rows": args.rows,
            "holdout_rows": args.holdout,
            "columns": len(SCHEMA.columns),
            "limit_seconds": LIMIT_SECONDS,
            "fedsynth": ours,
            "sdmetrics_quality_report": peer,
            "within_limit": ours["total_seconds"] <= LIMIT_SECONDS,
        },
    )
    print(f"results: {path}")
    return 0 if ours["total_seconds"] <= LIMIT_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
