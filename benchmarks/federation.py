"""A `federated` copula job over k real agent processes on loopback, against a central fit.

For each k (default 3 and 10) every agent holds `--rows` rows of its own (different data per
site). The broker runs the federated plan (two statistics rounds, fit, sample, an audit at every
site, release); the same process then fits the copula centrally on the pooled prepared training
rows (each site holds out the same seeded 20% for its audit's baselines).
Reported: wall time per step (from the broker's audit log), the job's wall time, the central
fit's, the overhead (job minus central fit + sample + one audit), and the quality gap between
the two models (largest correlation difference; whether the fitted marginals are identical).

    .venv/bin/python benchmarks/federation.py [--agents 3 10] [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import write_results
from fedsynth import audit
from fedsynth.audit.policy import AuditPolicy
from fedsynth.prep import PrepSpec, output_schema
from fedsynth.prep import run as prepare
from fedsynth.schema import TableSchema
from fedsynth.splits import holdout_split
from fedsynth.synth import Artifact, GaussianCopula, Synthesizer
from tests.federation.harness import (
    LENIENT_POLICY,
    SCHEMA,
    Federation,
    job,
    make_federation,
)

OUTPUT_ROWS = 20_000


def _step_times(state_dir: Path, job_id: str) -> dict[str, float]:
    with sqlite3.connect(state_dir / "broker.sqlite3") as db:
        rows = db.execute(
            "SELECT at, action, detail_json FROM audit_log WHERE subject = ? ORDER BY seq",
            (job_id,),
        ).fetchall()
    times: dict[str, float] = {}
    previous = None
    for at, action, detail in rows:
        stamp = datetime.fromisoformat(at)
        if action == "job.started":
            previous = stamp
        elif action == "job.step" and previous is not None:
            times[json.loads(detail)["step"]] = (stamp - previous).total_seconds()
            previous = stamp
    return times


def _model(state_dir: Path, job_id: str) -> GaussianCopula:
    with sqlite3.connect(state_dir / "broker.sqlite3") as db:
        (text,) = db.execute(
            "SELECT result_json FROM job_steps WHERE job_id = ? AND name = 'fit_and_sample'",
            (job_id,),
        ).fetchone()
    sha = json.loads(text)["artifacts"]["model"]
    path = state_dir / "artifacts" / "sha256" / sha[:2] / sha
    model = Synthesizer.from_artifact(Artifact.from_bytes(path.read_bytes()))
    assert isinstance(model, GaussianCopula)
    return model


def _wait_connected(fed: Federation, names: set[str], timeout: float = 300.0) -> None:
    """Start timing only once every agent has dialled in (agent start-up is not job time)."""
    deadline = time.monotonic() + timeout
    with fed.operator() as ops:
        while {s.name for s in ops.suppliers() if s.last_contact} < names:
            if time.monotonic() > deadline:
                raise RuntimeError("agents did not connect; see their logs")
            threading.Event().wait(0.2)


def run_one(agents: int, rows: int) -> dict[str, object]:
    names = tuple(f"site-{i:02d}" for i in range(agents))
    with tempfile.TemporaryDirectory(prefix="fedbench-") as scratch:
        fed = make_federation(Path(scratch), names, rows=rows, strict=False, sql_site=names[-1])
        fed.broker.start()
        for agent in fed.agents.values():
            agent.start()
        try:
            _wait_connected(fed, set(names))
            spec = job("bench", "federated", names).model_copy(update={"rows": OUTPUT_ROWS})
            start = time.perf_counter()
            job_id = fed.submit(spec)
            finished = fed.wait(job_id, timeout=3600)
            job_s = time.perf_counter() - start
            if finished.state != "succeeded":
                raise RuntimeError(f"job {finished.state}: {finished.reason}")
            steps = _step_times(fed.broker.state_dir, job_id)
            federated = _model(fed.broker.state_dir, job_id)
        finally:
            fed.stop()
        schema = TableSchema.from_dict(SCHEMA)
        prep = PrepSpec(source="patients")
        start = time.perf_counter()
        pooled = pd.concat(
            [
                holdout_split(prepare(fed.data[n].astype(str), prep, schema)[0], 0.2, 0)[0]
                for n in names
            ],
            ignore_index=True,
        )
        prep_s = time.perf_counter() - start
        start = time.perf_counter()
        central = GaussianCopula().fit(pooled, output_schema(schema, prep))
        sample = central.sample(OUTPUT_ROWS, seed=0)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        audit.run(pooled, sample, central.schema_, policy=AuditPolicy(**LENIENT_POLICY))
        audit_s = time.perf_counter() - start
    gap = float(np.max(np.abs(federated.correlation_ - central.correlation_)))
    return {
        "agents": agents,
        "rows_per_agent": rows,
        "job_seconds": round(job_s, 2),
        "steps_seconds": {k: round(v, 2) for k, v in steps.items()},
        "central_prepare_seconds": round(prep_s, 2),
        "central_fit_sample_seconds": round(fit_s, 2),
        "central_audit_seconds": round(audit_s, 2),
        "central_seconds": round(fit_s + audit_s, 2),
        "overhead_seconds": round(job_s - fit_s - audit_s, 2),
        "max_correlation_gap": gap,
        "marginals_identical": federated.marginal_report() == central.marginal_report(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    results = [run_one(k, args.rows) for k in args.agents]
    print(
        f"{'agents':>6} {'rows/agent':>10} {'job s':>7} {'central s':>9} {'overhead s':>10} "
        f"{'corr gap':>9} {'same marginals':>14}"
    )
    for r in results:
        print(
            f"{r['agents']:>6} {r['rows_per_agent']:>10} {r['job_seconds']:>7} "
            f"{r['central_seconds']:>9} {r['overhead_seconds']:>10} "
            f"{r['max_correlation_gap']:>9.2e} {r['marginals_identical']!s:>14}"
        )
        print(f"       steps (s): {r['steps_seconds']}")
    path = write_results(
        "federation",
        {
            "target": "federated job adds < 10 s over a central fit; no quality gap",
            "output_rows": OUTPUT_ROWS,
            "audit_policy": "lenient thresholds, 100-row audit samples (tests' policy)",
            "runs": results,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
