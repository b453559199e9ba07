"""`make demo`: a whole federation on loopback, end to end, then everything shut down.

Generates the demo sources and a federation PKI, starts a broker and three supplier agents as
separate processes on 127.0.0.1, submits a job in the chosen topology, waits for it with a
progress display, has the consumer pull and verify the release, prints a summary and stops
every process. Work files go to `.demo/` (replaced on each run), one log per process.

    .venv/bin/python demo/run.py [--topology federated|local|prepared|central] [--rows N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from rich.console import Console
from rich.table import Table

from consumer_client.client import Client
from fedsynth.jobs import JobSpec
from fedsynth.operator.client import OperatorClient
from fedsynth.prep.spec import PrepSpec
from fedsynth.schema import TableSchema
from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role
from fedsynth.simulation.demo_data import HOSPITALS, DemoSource, generate

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
FEDERATION = "demo"
SUPPLIERS = {name: name.replace("_", "-") for name in HOSPITALS}
BIN = Path(sys.executable).parent
JOB_TIMEOUT_S = 150
EGRESS = {"federated": "statistics", "local": "synthetic", "prepared": "prepared", "central": "raw"}
CONSTRAINTS = [{"kind": "derived", "column": "age", "expression": 'age(birth_date, "2024-06-30")'}]
"""Every site's prep derives `age` so (deploy/config/job.yaml declares the same): synthetic ages
are recomputed from synthetic birth dates rather than modelled apart from them."""

console = Console()


@dataclass
class Federation:
    """The demo's work folder, PKI and ports, and the processes it started."""

    work: Path
    ca: FederationCA
    port: int = field(default_factory=lambda: free_port())
    health: int = field(default_factory=lambda: free_port())
    started: list[subprocess.Popen] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def tls(self, role: Role, name: str) -> dict[str, str]:
        cert, key = self.ca.paths_for(role, name)
        return {"ca": str(self.ca.directory / "ca.pem"), "cert": str(cert), "key": str(key)}

    def write_yaml(self, name: str, data: dict[str, Any]) -> Path:
        path = self.work / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.started.append(proc)
        return proc

    def start_broker(self) -> None:
        config = self.write_yaml(
            "broker.yaml",
            {
                "federation": FEDERATION,
                "listen": self.address,
                "health_listen": f"127.0.0.1:{self.health}",
                "state_dir": str(self.work / "broker"),
                "key_file": str(self.work / "broker" / "at-rest.key"),
                "tls": {**self.tls(Role.BROKER, "broker"), "crl": str(self.ca.crl_path)},
                "suppliers": sorted(SUPPLIERS.values()),
            },
        )
        broker = self.start(
            "broker", [str(BIN / "fedsynth-broker"), "serve", "--config", str(config)]
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if broker.poll() is not None:
                raise SystemExit(f"the broker exited; see {self.work / 'broker.log'}")
            probe = [str(BIN / "fedsynth-broker"), "probe", f"127.0.0.1:{self.health}"]
            if subprocess.run([*probe, "--timeout", "1"], capture_output=True).returncode == 0:
                console.print(f"broker serving on {self.address} (mutual TLS)")
                return
        raise SystemExit("the broker did not become healthy within 60 s")

    def start_agents(self, topology: str, sources: dict[str, DemoSource]) -> None:
        secret = self.work / "linkage.secret"
        secret.write_bytes(secrets.token_hex(32).encode())
        secret.chmod(0o600)
        for source in HOSPITALS:
            supplier = SUPPLIERS[source]
            config = self.write_yaml(
                f"agent-{supplier}.yaml",
                {
                    "name": supplier,
                    "broker": self.address,
                    "tls": {**self.tls(Role.SUPPLIER, supplier), "crl": str(self.ca.crl_path)},
                    "state_dir": str(self.work / supplier),
                    "sources": {source: {"kind": "file", "path": str(sources[source].data)}},
                    "egress": {"allow": [EGRESS[topology]], "topologies": [topology]},
                    "reconnect": {"initial_s": 0.2, "max_s": 2.0},
                    "linkage_secret": str(secret),
                },
            )
            self.start(supplier, [str(BIN / "fedsynth-supplier"), "run", "--config", str(config)])
        console.print(f"supplier agents started: {', '.join(SUPPLIERS.values())}")

    def stop(self) -> None:
        """TERM every started process, then KILL what has not ended within 10 s."""
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.started:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_pki(folder: Path) -> FederationCA:
    ca = FederationCA.init(folder, FEDERATION)
    ca.issue(Role.BROKER, "broker", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    for supplier in SUPPLIERS.values():
        ca.issue(Role.SUPPLIER, supplier)
    ca.issue(Role.OPERATOR, "operator")
    ca.issue(Role.CONSUMER, "analyst")
    return ca


def demo_job(topology: str, sources: dict[str, DemoSource], rows: int) -> JobSpec:
    """The job the operator submits: the hospitals' common schema, each site's prep spec."""
    schema = TableSchema.load(DEMO / "schema.yaml")
    return JobSpec.model_validate(
        {
            "name": f"demo-{topology}",
            "topology": topology,
            "suppliers": [{"supplier": SUPPLIERS[s], "source": s} for s in HOSPITALS],
            "schema": schema.model_dump(mode="json"),
            "prep": {
                SUPPLIERS[s]: PrepSpec.load(sources[s].prep_spec).model_dump(mode="json")
                for s in HOSPITALS
            },
            "synthesizer": {"name": "copula", "params": {"constraints": CONSTRAINTS}},
            "rows": rows,
            "target": "systolic_bp",
            "merge_source_column": topology == "local",
            "seed": 7,
        }
    )


def run_job(fed: Federation, spec: JobSpec) -> str:
    tls = fed.tls(Role.OPERATOR, "operator")
    with OperatorClient(fed.address, **tls) as client:
        job = client.submit(spec)
        console.print(
            f"job {job.job_id} submitted ({spec.topology.value}, {spec.synthesizer.name})"
        )
        deadline = time.monotonic() + JOB_TIMEOUT_S
        with console.status("waiting for the job") as status:
            while time.monotonic() < deadline:
                job = client.status(job.job_id)
                status.update(f"job {job.job_id}: {job.state} {job.reason}".strip())
                if job.state in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.5)
    if job.state != "succeeded":
        raise SystemExit(f"job {job.job_id} ended {job.state}: {job.reason}; logs in {fed.work}")
    return job.job_id


def pull_release(fed: Federation, job_id: str) -> dict[str, Any]:
    with Client(fed.address, **fed.tls(Role.CONSUMER, "analyst")) as client:
        summary = next(r for r in client.list() if r.job_id == job_id)
        out = fed.work / "release" / f"{summary.release_id}.parquet"
        out.parent.mkdir(exist_ok=True)
        verified = client.pull_to(summary.release_id, out)
    report_path = out.with_suffix(".audit.json")
    report_path.write_text(json.dumps(verified.audit_report, indent=2))
    attestation_path = out.with_suffix(".attestation.json")
    attestation_path.write_text(json.dumps(verified.attestation, indent=2))
    return {
        "release": summary.release_id,
        "dataset": out,
        "rows": pq.ParquetFile(out).metadata.num_rows,
        "report": verified.audit_report,
        "report_path": report_path,
        "attestation": verified.attestation,
        "attestation_path": attestation_path,
    }


def summarize(release: dict[str, Any], topology: str, seconds: float) -> None:
    report, attestation = release["report"], release["attestation"]
    table = Table(title=f"release {release['release']} ({topology})", show_header=False)
    table.add_row("rows", f"{release['rows']:,}")
    table.add_row("audit verdict", str(report.get("verdict")))
    audits = {f"{s} (signed)": v for s, v in (report.get("supplier_verdicts") or {}).items()}
    if "broker_audit" in report:
        audits["broker's audit"] = report["broker_audit"]
    for party, verdict in audits.items():
        scores = verdict.get("scores") or {}
        table.add_row(
            party,
            f"{verdict.get('verdict')}: fidelity {_score(scores.get('fidelity'))}, "
            f"utility {_score(scores.get('utility_ratio'))}, "
            f"detection AUC {_score(scores.get('detection_auc'))}",
        )
    table.add_row("privacy spent", _privacy(attestation.get("privacy_spent")))
    table.add_row("wall time", f"{seconds:.1f} s")
    console.print(table)
    # Below the table and never wrapped: a cell would cut a path at the console's width.
    for label, path in (
        ("dataset", release["dataset"]),
        ("audit report", release["report_path"]),
        ("attestation", release["attestation_path"]),
    ):
        console.print(f"{label + ':':<14}{path}", soft_wrap=True, highlight=False, markup=False)
    console.print("[bold green]demo finished: release pulled and verified[/]")


def _privacy(spent: dict[str, Any] | None) -> str:
    """The privacy budget a DP release spent, or plainly that the job used no DP."""
    return json.dumps(spent) if spent else "none (no DP)"


def _score(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


@contextlib.contextmanager
def federation(work: Path) -> Iterator[Federation]:
    """A fresh work folder and PKI; every process started is stopped however the demo ends."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    fed = Federation(work, make_pki(work / "pki"))
    try:
        yield fed
    finally:
        fed.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--topology",
        default=os.environ.get("TOPOLOGY", "federated"),
        choices=sorted(EGRESS),
    )
    parser.add_argument("--rows", type=int, default=6000, help="Persons in the population.")
    parser.add_argument("--release-rows", type=int, default=3000, help="Synthetic rows.")
    parser.add_argument("--work", type=Path, default=ROOT / ".demo", help="Work folder.")
    args = parser.parse_args()
    began = time.monotonic()
    console.rule(f"fedsynth demo: {args.topology} topology")
    with federation(args.work) as fed:
        sources = {s.name: s for s in generate(fed.work / "data", rows=args.rows)}
        fed.start_broker()
        fed.start_agents(args.topology, sources)
        job_id = run_job(fed, demo_job(args.topology, sources, args.release_rows))
        release = pull_release(fed, job_id)
    summarize(release, args.topology, time.monotonic() - began)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
