"""Validated CSV reading against plain pandas.read_csv on the same generated file.

Generates a CSV of N rows (default 5,000,000) and 12 mixed columns with 0.1% bad cells, then
runs, each in a fresh process: pandas.read_csv; fedsynth validation (report + quarantine);
fedsynth validation writing the accepted rows to Parquet; and fedsynth validation of a file a
fifth the size, to show peak memory does not grow with the file.

    python benchmarks/io_validate.py [--rows 5000000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import DATA, measure, write_results
from fedsynth.schema import (
    BooleanColumn,
    CategoricalColumn,
    DatetimeColumn,
    IdentifierColumn,
    NumericalColumn,
    TableSchema,
    TextColumn,
)

SCHEMA = TableSchema(
    name="bench",
    columns=[
        IdentifierColumn(name="patient_id"),
        NumericalColumn(name="age", dtype="int", min=0, max=120),
        CategoricalColumn(name="sex", domain=["female", "male"]),
        NumericalColumn(name="weight_kg", min=1, max=400),
        NumericalColumn(name="height_cm", min=30, max=250),
        CategoricalColumn(name="region", domain=[f"R{i:02d}" for i in range(20)]),
        BooleanColumn(name="smoker"),
        DatetimeColumn(name="admitted", min="1990-01-01", max="2030-12-31"),
        NumericalColumn(name="visits", dtype="int", min=0),
        NumericalColumn(name="income", min=0),
        CategoricalColumn(name="diagnosis", domain=[f"D{i:03d}" for i in range(200)]),
        TextColumn(name="note"),
    ],
)


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write `rows` rows in chunks; 0.1% of rows carry one bad cell."""
    rng = np.random.default_rng(seed)
    chunk = 500_000
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with pacsv.CSVWriter(tmp, pa.schema([(c.name, pa.string()) for c in SCHEMA.columns])) as w:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            days = rng.integers(0, 365 * 30, n).astype("timedelta64[D]")
            cols = {
                "patient_id": np.char.add("P", np.arange(start, start + n).astype(str)),
                "age": rng.integers(0, 100, n).astype(str),
                "sex": rng.choice(["female", "male"], n),
                "weight_kg": np.round(rng.normal(75, 15, n).clip(2, 300), 1).astype(str),
                "height_cm": np.round(rng.normal(170, 10, n), 1).astype(str),
                "region": rng.choice([f"R{i:02d}" for i in range(20)], n),
                "smoker": rng.choice(["true", "false"], n),
                "admitted": (np.datetime64("1995-01-01") + days).astype(str),
                "visits": rng.poisson(3, n).astype(str),
                "income": np.round(rng.lognormal(10, 1, n), 2).astype(str),
                "diagnosis": rng.choice([f"D{i:03d}" for i in range(200)], n),
                "note": rng.choice(["stable", "follow-up", "referred, see letter", ""], n),
            }
            bad = rng.random(n) < 0.001
            cols["age"] = np.where(bad, "-1", cols["age"])
            arrays = [pa.array(cols[c.name].tolist(), pa.string()) for c in SCHEMA.columns]
            w.write_batch(pa.RecordBatch.from_arrays(arrays, names=SCHEMA.names))
    tmp.replace(path)


PANDAS = """
import sys, pandas as pd
df = pd.read_csv(sys.argv[1])
RESULT = {"rows": len(df)}
"""

FEDSYNTH = """
import sys
from fedsynth.io import validate_file
from fedsynth.schema import TableSchema
schema = TableSchema.load(sys.argv[2])
out = sys.argv[4] if len(sys.argv) > 4 else None
report = validate_file(sys.argv[1], schema, quarantine=sys.argv[3], out=out)
RESULT = {"rows": report.rows_in, "quarantined": report.rows_quarantined}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    big = DATA / f"io_validate_{args.rows}.csv"
    small = DATA / f"io_validate_{args.rows // 5}.csv"
    schema_path = DATA / "io_validate_schema.yaml"
    SCHEMA.save(schema_path)
    for path, rows in ((big, args.rows), (small, args.rows // 5)):
        if not path.exists():
            print(f"generating {path} ({rows:,} rows)", flush=True)
            generate(path, rows)
    q = str(DATA / "io_validate_quarantine.csv")
    runs = {
        "pandas.read_csv": measure(PANDAS, str(big)),
        "fedsynth validate": measure(FEDSYNTH, str(big), str(schema_path), q),
        "fedsynth validate -> parquet": measure(
            FEDSYNTH, str(big), str(schema_path), q, str(DATA / "io_validate_out.parquet")
        ),
        "fedsynth validate (1/5 file)": measure(FEDSYNTH, str(small), str(schema_path), q),
    }
    base = runs["pandas.read_csv"]["seconds"]
    header = ("method", "rows", "seconds", "rows/s", "peak MiB", "x pandas")
    print("\n{:32} {:>10} {:>8} {:>12} {:>9} {:>9}".format(*header))
    for name, r in runs.items():
        r["rows_per_second"] = r["rows"] / r["seconds"]
        r["speed_vs_pandas"] = base / r["seconds"] * (r["rows"] / runs["pandas.read_csv"]["rows"])
        print(
            f"{name:32} {r['rows']:>10,} {r['seconds']:>8.2f} {r['rows_per_second']:>12,.0f} "
            f"{r['peak_rss_mib']:>9.0f} {r['speed_vs_pandas']:>9.2f}"
        )
    path = write_results(
        "io_validate",
        {
            "rows": args.rows,
            "columns": len(SCHEMA.columns),
            "file_bytes": big.stat().st_size,
            "runs": runs,
        },
    )
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
