"""The `local` topology: each site synthesizes and audits its own rows, signs its verdict and
uploads synthetic rows only; the broker merges them (with a source column) and releases."""

from __future__ import annotations

import json
import sqlite3

from consumer_client import Client
from fedsynth.security.principals import Role
from tests.federation.harness import SUPPLIERS, Federation, job


def test_local_job_merges_signed_site_outputs_into_a_verified_release(
    federation: Federation,
) -> None:
    job_id = federation.submit(job("local-merge", "local", merge_source_column=True))
    finished = federation.wait(job_id)
    assert finished.state == "succeeded", finished.reason
    with Client(
        federation.broker.address, **federation.broker.identity(Role.CONSUMER, "alice")
    ) as client:
        (release,) = [r for r in client.list() if r.job_id == job_id]
        manifest = client.show(release.release_id)
        frame = client.pull(release.release_id)
    assert frame["source"].value_counts().to_dict() == {s: 80 for s in SUPPLIERS}
    attested = manifest.schema
    assert attested is not None and attested.names == list(frame.columns)
    assert list(attested.column("source").domain) == list(SUPPLIERS)
    verdicts = [json.loads(v["payload"]) for v in manifest.attestation["supplier_verdicts"]]
    assert sorted(v["supplier"] for v in verdicts) == sorted(SUPPLIERS)
    assert {v["verdict"] for v in verdicts} == {"pass"}
    with sqlite3.connect(federation.broker.state_dir / "broker.sqlite3") as db:
        kinds = {k for (k,) in db.execute("SELECT kind FROM uploads WHERE job_id = ?", (job_id,))}
    assert kinds == {"UPLOAD_KIND_SYNTHETIC"}


def test_every_artifact_that_left_a_site_is_in_its_egress_log_with_its_hash(
    federation: Federation,
) -> None:
    job_id = federation.submit(job("local-egress-log", "local"))
    assert federation.wait(job_id).state == "succeeded"
    with sqlite3.connect(federation.broker.state_dir / "broker.sqlite3") as db:
        received = set(
            db.execute("SELECT supplier, sha256 FROM uploads WHERE job_id = ?", (job_id,))
        )
    logged = set()
    for name in SUPPLIERS:
        log = federation.agents[name].config_path.parent / "state" / "egress.jsonl"
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry["job"] == job_id:
                logged.add((name, entry["sha256"]))
    assert logged == received and len(received) == len(SUPPLIERS)
