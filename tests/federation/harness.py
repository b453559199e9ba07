"""A whole federation on 127.0.0.1 for tests: a broker process, supplier agent processes with real
certificates, each reading its own data (CSV files, or a SQLite database), and job helpers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from fedsynth.jobs import JobSpec
from fedsynth.operator.client import OperatorClient
from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role
from fedsynth.wire.stubs import SupplierStub
from fedsynth.wire.v1 import operator_pb2, supplier_pb2
from supplier_agent.audit_bar import SAMPLE_SIZES
from supplier_agent.config import AgentConfig, ArtifactKind
from tests.wire.broker_harness import REPO, BrokerProcess, free_port

FEDERATION = "fedtest"
SUPPLIERS = ("north", "south", "east")
STRICT = "strict"
ROWS = 300
ALL_TOPOLOGIES = ["local", "federated", "prepared", "central"]
PRIVACY_CAP = {"epsilon": 50.0, "delta": 1e-5}
TINY_PRIVACY_CAP = {"epsilon": 0.5, "delta": 1e-5}

SCHEMA: dict[str, Any] = {
    "name": "patients",
    "columns": [
        {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
        {"name": "bmi", "kind": "numerical", "dtype": "float", "min": 10, "max": 60},
        {"name": "sex", "kind": "categorical", "domain": ["F", "M"]},
        {"name": "smoker", "kind": "categorical", "domain": ["no", "yes"]},
    ],
}

LENIENT_POLICY: dict[str, Any] = {
    "min_column_shapes": 0.0,
    "min_worst_column_shape": 0.0,
    "min_pair_trends": 0.0,
    "min_boundary_adherence": 0.0,
    "max_detection_auc": 1.0,
    "min_utility_ratio": 0.0,
    "max_exact_match_rate": 1.0,
    "max_unique_match_rate": 1.0,
    "max_share_closer_to_train": 1.0,
    "max_membership_auc": 1.0,
    "max_qi_membership_advantage": 1.0,
    "max_attribute_disclosure": 1.0,
    "max_singling_out": 1.0,
    "min_rare_in_proportion": 0.0,
    "max_invalid_row_rate": 1.0,
    "detection_rows": 100,
    "utility_rows": 100,
    "distance_rows": 100,
    "reference_rows": 100,
    "singling_out_predicates": 10,
}
LENIENT_THRESHOLDS = {
    k: v
    for k, v in LENIENT_POLICY.items()
    if k.startswith(("min_", "max_")) or k.endswith(SAMPLE_SIZES)
}
"""The sites' own bar in these tests: as lenient as the jobs', since tiny test tables fail the
project's default thresholds (which a site applies unless it says otherwise)."""


def site_rows(index: int, rows: int = ROWS) -> pd.DataFrame:
    """Different data per site: shifted ages, a BMI that grows with age, site-specific rates."""
    rng = np.random.default_rng(100 + index)
    shift = index % 4
    age = np.clip(rng.normal(40 + 8 * shift, 12, rows).round(), 18, 95).astype(int)
    bmi = np.clip(18 + 0.12 * age + rng.normal(shift, 3, rows), 10, 60).round(1)
    sex = rng.choice(["F", "M"], rows, p=[0.4 + 0.1 * shift, 0.6 - 0.1 * shift])
    smoker = np.where(rng.random(rows) < 0.15 + 0.1 * shift, "yes", "no")
    return pd.DataFrame({"age": age, "bmi": bmi, "sex": sex, "smoker": smoker})


def linked_rows(people: int = ROWS) -> pd.DataFrame:
    """One population with a patient number, to be split by column between two sites."""
    frame = site_rows(0, people)
    frame.insert(0, "patient_id", [f"P{i:05d}" for i in range(people)])
    return frame


@dataclass
class AgentProcess:
    """A `fedsynth-supplier run` subprocess."""

    name: str
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supplier_agent.cli", "run", "-v", "--config", str(self)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "ab"),  # noqa: SIM115
        )

    def __str__(self) -> str:
        return str(self.config_path)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


@dataclass
class Federation:
    """A broker and its agents, with the data each agent reads."""

    broker: BrokerProcess
    agents: dict[str, AgentProcess]
    data: dict[str, pd.DataFrame] = field(default_factory=dict)

    def operator(self) -> OperatorClient:
        return OperatorClient(self.broker.address, **self.broker.identity(Role.OPERATOR, "ops"))

    def submit(self, spec: JobSpec) -> str:
        with self.operator() as ops:
            return ops.submit(spec).job_id

    def wait(self, job_id: str, timeout: float = 120.0) -> operator_pb2.Job:
        """Poll the job until it ends or the deadline passes (then fail with its state)."""
        deadline = time.monotonic() + timeout
        tick = threading.Event()
        with self.operator() as ops:
            while True:
                job = ops.status(job_id)
                if job.state in {"succeeded", "failed", "cancelled"}:
                    return job
                assert time.monotonic() < deadline, f"job {job_id} still {job.state}"
                tick.wait(0.25)

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        self.broker.stop()


@contextmanager
def strict_site_task(
    fed: Federation, state_dir: Path, spec: JobSpec, **config: Any
) -> Iterator[tuple[AgentConfig, SupplierStub, supplier_pb2.Task]]:
    """For a test that runs the strict site's agent in-process: that agent's process stopped,
    its config with state in `state_dir`, every artifact kind allowed and `config` in place, a
    real stub as that site, and the task the broker sends it for `spec` (submitted here). The
    agent process is started again afterwards."""
    agent = fed.agents[STRICT]
    agent.stop()
    try:
        loaded = AgentConfig.load(agent.config_path)
        egress = loaded.egress.model_copy(update={"allow": frozenset(ArtifactKind)})
        settings = loaded.model_copy(update={"state_dir": state_dir, "egress": egress, **config})
        job_id = fed.submit(spec)
        channel = fed.broker.channel(Role.SUPPLIER, STRICT)
        try:
            stub = SupplierStub(channel)
            stream = stub.Subscribe(supplier_pb2.SubscribeRequest(supplier=STRICT), timeout=60)
            task = next(t for t in stream if t.job_id == job_id)
            stream.cancel()
            yield settings, stub, task
        finally:
            channel.close()
    finally:
        agent.start()


def job(name: str, topology: str, suppliers: tuple[str, ...] = SUPPLIERS, **extra: Any) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": name,
            "topology": topology,
            "suppliers": [{"supplier": s, "source": "patients"} for s in suppliers],
            "schema": SCHEMA,
            "synthesizer": {"name": "copula"},
            "rows": 240,
            "audit_policy": LENIENT_POLICY,
            **extra,
        }
    )


def _agent_config(
    root: Path,
    pki: FederationCA,
    name: str,
    address: str,
    sources: dict[str, Any],
    strict: bool,
) -> Path:
    cert, key = pki.paths_for(Role.SUPPLIER, name)
    egress = {"allow": ["statistics"] if strict else ["raw", "prepared", "synthetic", "statistics"]}
    config = {
        "name": name,
        "broker": address,
        "tls": {
            "ca": str(pki.directory / "ca.pem"),
            "cert": str(cert),
            "key": str(key),
            "crl": str(pki.crl_path),
        },
        "state_dir": str(root / name / "state"),
        "sources": sources,
        "egress": {
            **egress,
            "topologies": ALL_TOPOLOGIES,
            "min_audit": LENIENT_THRESHOLDS,
            "min_parties": 2,  # the quorum test merges two sites' statistics
        },
        "reconnect": {"initial_s": 0.2, "max_s": 2.0},
        "linkage_secret": str(root / "linkage.key"),
        "privacy_cap": TINY_PRIVACY_CAP if strict else PRIVACY_CAP,
    }
    path = root / name / "agent.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def make_federation(
    root: Path,
    suppliers: tuple[str, ...] = SUPPLIERS,
    *,
    rows: int = ROWS,
    strict: bool = True,
    sql_site: str = "east",
) -> Federation:
    """PKI, broker config and agent configs; `sql_site` reads from SQLite, the others from CSV;
    with `strict`, one more site lets only statistics leave and has a tiny privacy cap."""
    pki = FederationCA.init(root / "pki", FEDERATION)
    pki.issue(Role.BROKER, "broker", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    names = (*suppliers, STRICT) if strict else suppliers
    for name in names:
        pki.issue(Role.SUPPLIER, name)
    pki.issue(Role.OPERATOR, "ops")
    pki.issue(Role.CONSUMER, "alice")
    cert, key = pki.paths_for(Role.BROKER, "broker")
    address, health = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = {
        "federation": FEDERATION,
        "listen": address,
        "health_listen": health,
        "state_dir": "state",
        "key_file": "state/at-rest.key",
        "tls": {"ca": str(pki.directory / "ca.pem"), "cert": str(cert), "key": str(key)},
        "suppliers": list(names),
        "limits": {"chunk_bytes": 16 * 1024},
    }
    config_path = root / "broker.yaml"
    config_path.write_text(yaml.safe_dump(config))
    broker = BrokerProcess(root, pki, config_path, address, health)
    secret = root / "linkage.key"
    secret.write_bytes(np.random.default_rng(9).bytes(32))
    secret.chmod(0o600)
    population = linked_rows()
    split = {
        SUPPLIERS[0]: population.iloc[:280][["patient_id", "age", "sex"]],
        SUPPLIERS[1]: population.iloc[20:][["patient_id", "bmi", "smoker"]],
    }
    agents, data = {}, {}
    for i, name in enumerate(names):
        frame = site_rows(i, rows)
        data[name] = frame
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        if name == sql_site:
            with sqlite3.connect(folder / "clinic.db") as db:
                frame.to_sql("patients", db, index=False)
            source = {
                "kind": "sql",
                "url": f"sqlite:///{folder / 'clinic.db'}",
                "query": "SELECT age, bmi, sex, smoker FROM patients",
            }
        else:
            frame.to_csv(folder / "patients.csv", index=False)
            source = {"kind": "file", "path": str(folder / "patients.csv")}
        sources = {"patients": source}
        if name in split:
            split[name].sample(frac=1.0, random_state=i).to_csv(folder / "linked.csv", index=False)
            sources["linked"] = {"kind": "file", "path": str(folder / "linked.csv")}
        path = _agent_config(root, pki, name, address, sources, strict=name == STRICT)
        agents[name] = AgentProcess(name, path, root / f"{name}.log")
    return Federation(broker, agents, data)
