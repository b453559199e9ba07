"""Differential privacy in jobs, end to end with real agents on 127.0.0.1 (the harness gives
them privacy caps, STRICT a tiny one): federated dp-marginal with and without secure aggregation
(the broker's sums carry the noise of one central release, or k times it), budgets charged at
the sites before anything leaves, a cap that refuses a job, a round restarted without a
supplier that never delivered, and attestations stating the spend."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from broker.steps import SUMMARY_SCORES
from consumer_client import Client
from fedsynth.jobs import JobSpec
from fedsynth.prep import PrepSpec
from fedsynth.prep import run as prepare
from fedsynth.privacy.accountant import PrivacyCost, approximate_cost, compose
from fedsynth.privacy.rounds import start_model, vector_from_bytes
from fedsynth.privacy.secagg import fixed_point_for
from fedsynth.schema import TableSchema
from fedsynth.security.principals import Role
from fedsynth.splits import holdout_split
from supplier_agent.config import AgentConfig
from supplier_agent.dp_tasks import LEDGER_FILE
from supplier_agent.egress import EgressLog
from supplier_agent.sources import read_source
from tests.federation.harness import SCHEMA, STRICT, SUPPLIERS, Federation, job
from tests.federation.test_topology_federated import (
    pooled_training_rows,
    step_result,
    stored,
)

EPSILON, DELTA = 1.0, 1e-6
FINE = {"bins": 1024}
"""Fine bins: well over a thousand noisy cells per job; their mean z^2 has sd under 4%."""


def dp_job(
    name: str,
    topology: str = "federated",
    suppliers: tuple[str, ...] = SUPPLIERS,
    *,
    secure: bool = True,
    synthesizer: str = "dp-marginal",
    params: dict[str, Any] | None = None,
    **extra: Any,
) -> JobSpec:
    data = job(name, topology, suppliers, **extra).model_dump(mode="json", by_alias=True)
    data["synthesizer"] = {"name": synthesizer, "params": params or {}}
    data["privacy"] = {"epsilon": EPSILON, "delta": DELTA, "secure_aggregation": secure}
    return JobSpec.model_validate(data)


def attestation(fed: Federation, job_id: str) -> dict[str, Any]:
    with Client(fed.broker.address, **fed.broker.identity(Role.CONSUMER, "alice")) as client:
        (release,) = [r for r in client.list() if r.job_id == job_id]
        return client.show(release.release_id).attestation


def state_dir(fed: Federation, name: str) -> Path:
    return Path(yaml.safe_load(fed.agents[name].config_path.read_text())["state_dir"])


def charged(fed: Federation, name: str, release_ids: list[str]) -> float:
    """Epsilon, at the job's delta, of what `name`'s own ledger recorded under these releases."""
    with sqlite3.connect(state_dir(fed, name) / LEDGER_FILE) as db:
        rows = db.execute(
            "SELECT release_id, epsilon, delta, rdp FROM charges WHERE source = 'patients'"
        )
        costs = {
            release: PrivacyCost(rdp=tuple(json.loads(rdp)))
            if rdp
            else approximate_cost(epsilon, delta)
            for release, epsilon, delta, rdp in rows
        }
    assert set(release_ids) <= set(costs)
    return compose(costs[r] for r in release_ids).epsilon_at(DELTA)


def site_training_rows(fed: Federation, name: str) -> pd.DataFrame:
    schema = TableSchema.from_dict(SCHEMA)
    config = AgentConfig.load(fed.agents[name].config_path)
    prepared, _ = prepare(
        read_source(config.source("patients")), PrepSpec(source="patients"), schema
    )
    return holdout_split(prepared, 0.2, 0)[0]


def standardized_noise(fed: Federation, job_id: str, spec: JobSpec) -> np.ndarray:
    """(broker's summed noisy counts - exact pooled counts) / central noise sd, every round."""
    pooled, _ = pooled_training_rows(fed)
    model = start_model(spec)
    parts = []
    for number in range(1, model.rounds_ + 1):
        sha = step_result(fed, job_id, f"sum_{number}")["artifacts"][f"round_{number}_sum"]
        noisy = vector_from_bytes(stored(fed, sha), masked=False)
        exact = model.counts(pooled)
        parts.append((noisy - exact) / np.sqrt(model.noise_variances()))
        model.absorb(noisy)
    return np.concatenate(parts)


def test_federated_dp_marginal_under_secure_aggregation_releases_and_charges_every_site(
    federation: Federation,
) -> None:
    spec = dp_job("dp-secure", params=FINE)
    job_id = federation.submit(spec)
    finished = federation.wait(job_id)
    assert finished.state == "succeeded", finished.reason
    spent = attestation(federation, job_id)["privacy_spent"]
    assert spent["delta"] == DELTA and 0.99 * EPSILON <= spent["epsilon"] <= EPSILON + 1e-9
    assert sorted(spent["suppliers"]) == sorted(SUPPLIERS)
    for name in SUPPLIERS:
        releases = [r["release_id"] for r in spent["suppliers"][name]["releases"]]
        assert len(releases) == start_model(spec).rounds_ == 3
        assert charged(federation, name, releases) == pytest.approx(
            spent["suppliers"][name]["epsilon"]
        )

    z = standardized_noise(federation, job_id, spec)
    assert z.size > 1000
    # each of the 3 sites adds half the noise, so that the two others' shares are a whole one
    assert 1.3 < float(np.mean(z**2)) < 1.75

    north = step_result(federation, job_id, "measure_1")["suppliers"]["north"]
    upload = stored(federation, north["uploads"]["measurement.bin"])
    seen = fixed_point_for(3).decode(vector_from_bytes(upload, masked=True))
    own = start_model(spec).counts(site_training_rows(federation, "north"))
    assert seen.shape == own.shape and np.median(np.abs(seen - own)) > 1e6


def test_without_secure_aggregation_the_sum_carries_k_times_the_noise(
    federation: Federation,
) -> None:
    spec = dp_job("dp-clear", secure=False, params=FINE)
    job_id = federation.submit(spec)
    finished = federation.wait(job_id)
    assert finished.state == "succeeded", finished.reason
    z = standardized_noise(federation, job_id, spec)
    assert z.size > 1000
    assert 2.55 < float(np.mean(z**2)) < 3.5
    assert attestation(federation, job_id)["privacy_spent"]["epsilon"] <= EPSILON + 1e-9


def test_federated_dp_tvae_trains_by_fedavg_and_charges_each_site_every_round(
    federation: Federation,
) -> None:
    params = {"fedavg_rounds": 2, "batch_size": 50, "hidden": 16, "latent": 4}
    spec = dp_job("dp-fedavg", synthesizer="tvae", params=params)
    job_id = federation.submit(spec)
    finished = federation.wait(job_id)
    assert finished.state == "succeeded", finished.reason
    spent = attestation(federation, job_id)["privacy_spent"]
    assert sorted(spent["suppliers"]) == sorted(SUPPLIERS)
    assert 0.97 * EPSILON <= spent["epsilon"] <= EPSILON + 1e-9
    for name in SUPPLIERS:
        releases = [r["release_id"] for r in spent["suppliers"][name]["releases"]]
        assert len(releases) == 2
        rows = len(site_training_rows(federation, name))
        expected = compose(start_model(spec).round_costs(rows)).epsilon_at(DELTA)
        assert charged(federation, name, releases) == pytest.approx(expected)
    north = step_result(federation, job_id, "measure_2")["suppliers"]["north"]
    upload = stored(federation, north["uploads"]["measurement.bin"])
    masked = vector_from_bytes(upload, masked=True)
    assert masked.size == sum(v.size for v in start_model(spec).weights().values()) + 1
    identity = federation.broker.identity(Role.CONSUMER, "alice")
    with Client(federation.broker.address, **identity) as client:
        (release,) = [r for r in client.list() if r.job_id == job_id]
        released = client.pull(release.release_id)
    assert list(released.columns) == TableSchema.from_dict(SCHEMA).names
    assert len(released) == spec.rows


def test_a_site_whose_cap_is_too_small_refuses_before_anything_leaves(
    federation: Federation,
) -> None:
    job_id = federation.submit(dp_job("dp-over-cap", suppliers=("north", STRICT)))
    finished = federation.wait(job_id)
    assert finished.state == "failed"
    assert STRICT in finished.reason and "over the cap" in finished.reason
    state = state_dir(federation, STRICT)
    assert not [e for e in EgressLog(state / "egress.jsonl").entries() if e.job == job_id]
    if (state / LEDGER_FILE).exists():
        with sqlite3.connect(state / LEDGER_FILE) as db:
            assert not db.execute("SELECT * FROM charges").fetchall()


def test_local_and_central_dp_jobs_attest_their_spend_and_a_non_dp_job_attests_none(
    federation: Federation,
) -> None:
    local = federation.submit(dp_job("dp-local", "local", ("north", "east")))
    central = federation.submit(dp_job("dp-central", "central", ("north", "south")))
    plain = federation.submit(job("plain-local", "local", ("south", "east")))
    for job_id in (local, central, plain):
        finished = federation.wait(job_id)
        assert finished.state == "succeeded", finished.reason
    spent = attestation(federation, local)["privacy_spent"]
    assert sorted(spent["suppliers"]) == ["east", "north"]
    assert 0.99 * EPSILON <= spent["epsilon"] <= EPSILON + 1e-9
    for name in ("north", "east"):
        (release,) = spent["suppliers"][name]["releases"]
        assert charged(federation, name, [release["release_id"]]) == pytest.approx(spent["epsilon"])
    central_spent = attestation(federation, central)["privacy_spent"]
    assert central_spent["accounted_by"] == "broker"
    assert 0.99 * EPSILON <= central_spent["epsilon"] <= EPSILON + 1e-9
    for name in ("north", "south"):
        upload = f"{central}.0.{name}"
        assert charged(federation, name, [upload]) == pytest.approx(EPSILON, rel=1e-6)
    assert attestation(federation, plain)["privacy_spent"] is None


def test_a_local_dp_release_attests_verdicts_without_scores_and_a_plain_one_keeps_them(
    federation: Federation, tmp_path: Path
) -> None:
    """A site's scores are exact statistics of its rows: a DP job's verdicts, published in the
    attestation and on the release's page, carry none, and the consumer still verifies them."""
    private = federation.submit(dp_job("dp-local-verdicts", "local", ("north", "east")))
    plain = federation.submit(job("plain-local-verdicts", "local", ("south", "east")))
    for job_id in (private, plain):
        finished = federation.wait(job_id)
        assert finished.state == "succeeded", finished.reason
    scores: dict[str, list[Any]] = {}
    pages: dict[str, str] = {}
    identity = federation.broker.identity(Role.CONSUMER, "alice")
    with Client(federation.broker.address, **identity) as client:
        for job_id in (private, plain):
            (release,) = [r for r in client.list() if r.job_id == job_id]
            page = tmp_path / f"{job_id}.html"
            verified = client.audit_html_to(release.release_id, page)
            signed = verified.attestation["supplier_verdicts"]
            scores[job_id] = [json.loads(v["payload"])["scores"] for v in signed]
            pages[job_id] = page.read_text()
    assert scores[private] == [{}, {}]
    assert [sorted(s) for s in scores[plain]] == [sorted(SUMMARY_SCORES)] * 2
    assert "<th>boundary_adherence</th>" not in pages[private]
    assert "audits show no scores" in pages[private]
    assert "<th>boundary_adherence</th>" in pages[plain]


def test_a_supplier_that_never_delivers_its_masked_vector_restarts_the_round_without_it(
    federation: Federation,
) -> None:
    victim = federation.agents["south"]
    source = victim.config_path.parent / "patients.csv"
    kept = source.read_bytes()
    source.unlink()
    os.mkfifo(source)
    try:
        job_id = federation.submit(dp_job("dp-dropout", quorum=2, timeouts={"task_s": 10}))
        finished = federation.wait(job_id)
    finally:
        victim.kill()
        source.unlink()
        source.write_bytes(kept)
        victim.start()
    assert finished.state == "succeeded", finished.reason
    with sqlite3.connect(federation.broker.state_dir / "broker.sqlite3") as db:
        restarts = db.execute(
            "SELECT round, participants_json FROM job_restarts WHERE job_id = ?", (job_id,)
        ).fetchall()
    assert [(n, json.loads(p)) for n, p in restarts] == [(1, ["east", "north"])]
    spent = attestation(federation, job_id)["privacy_spent"]
    assert sorted(spent["suppliers"]) == ["east", "north"]
    for name in ("east", "north"):
        releases = [r["release_id"] for r in spent["suppliers"][name]["releases"]]
        assert len(releases) == start_model(dp_job("x")).rounds_ + 1
        assert spent["suppliers"][name]["epsilon"] > EPSILON
    summed = step_result(federation, job_id, "sum_1")["summed"]
    assert summed == ["east", "north"]
