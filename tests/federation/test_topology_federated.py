"""The `federated` topology end to end: three agents on different data (two CSV files and a
SQLite database) send two rounds of statistics, the broker fits and samples, every supplier
audits the candidate and signs its verdict, and the consumer pulls a verified release."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd

from consumer_client import Client
from fedsynth.prep import PrepSpec, output_schema
from fedsynth.prep import run as prepare
from fedsynth.schema import TableSchema
from fedsynth.security.principals import Role
from fedsynth.splits import holdout_split
from fedsynth.synth import Artifact, GaussianCopula, Synthesizer
from supplier_agent.config import AgentConfig
from supplier_agent.sources import read_source
from tests.federation.harness import SCHEMA, SUPPLIERS, Federation, job


def step_result(fed: Federation, job_id: str, name: str) -> dict:
    with sqlite3.connect(fed.broker.state_dir / "broker.sqlite3") as db:
        (text,) = db.execute(
            "SELECT result_json FROM job_steps WHERE job_id = ? AND name = ?", (job_id, name)
        ).fetchone()
    return json.loads(text)


def stored(fed: Federation, sha256: str) -> bytes:
    return (fed.broker.state_dir / "artifacts" / "sha256" / sha256[:2] / sha256).read_bytes()


def pooled_training_rows(fed: Federation) -> tuple[pd.DataFrame, TableSchema]:
    schema = TableSchema.from_dict(SCHEMA)
    spec = PrepSpec(source="patients")
    frames = []
    for name in SUPPLIERS:
        config = AgentConfig.load(fed.agents[name].config_path)
        prepared, _ = prepare(read_source(config.source("patients")), spec, schema)
        train, _ = holdout_split(prepared, 0.2, 0)
        frames.append(train)
    return pd.concat(frames, ignore_index=True), output_schema(schema, spec)


def test_federated_job_releases_a_verified_dataset_with_every_suppliers_signed_verdict(
    federation: Federation,
) -> None:
    job_id = federation.submit(job("fed-release", "federated"))
    finished = federation.wait(job_id)
    assert finished.state == "succeeded", finished.reason
    with Client(
        federation.broker.address, **federation.broker.identity(Role.CONSUMER, "alice")
    ) as client:
        (release,) = [r for r in client.list() if r.job_id == job_id]
        manifest = client.show(release.release_id)
        frame = client.pull(release.release_id)
    assert len(frame) == 240 and list(frame.columns) == ["age", "bmi", "sex", "smoker"]
    verdicts = [json.loads(v["payload"]) for v in manifest.attestation["supplier_verdicts"]]
    assert sorted(v["supplier"] for v in verdicts) == sorted(SUPPLIERS)
    assert {v["dataset_sha256"] for v in verdicts} == {release.dataset_sha256}
    assert manifest.attestation["topology"] == "federated"
    assert not [u for u in federation_uploads(federation, job_id) if u != "UPLOAD_KIND_STATISTICS"]


def federation_uploads(fed: Federation, job_id: str) -> list[str]:
    with sqlite3.connect(fed.broker.state_dir / "broker.sqlite3") as db:
        return [k for (k,) in db.execute("SELECT kind FROM uploads WHERE job_id = ?", (job_id,))]


def test_federated_copula_equals_a_central_fit_on_the_pooled_prepared_training_rows(
    federation: Federation,
) -> None:
    job_id = federation.submit(job("fed-equals-central", "federated"))
    finished = federation.wait(job_id)
    assert finished.state == "succeeded", finished.reason
    sha = step_result(federation, job_id, "fit_and_sample")["artifacts"]["model"]
    federated = Synthesizer.from_artifact(Artifact.from_bytes(stored(federation, sha)))
    pooled, schema = pooled_training_rows(federation)
    central = GaussianCopula().fit(pooled, schema)
    assert isinstance(federated, GaussianCopula)
    np.testing.assert_allclose(federated.correlation_, central.correlation_, atol=1e-9)
    assert federated.marginal_report() == central.marginal_report()
    pd.testing.assert_frame_equal(federated.sample(200, seed=3), central.sample(200, seed=3))
