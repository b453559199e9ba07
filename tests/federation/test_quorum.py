"""Suppliers that never answer: the job fails after the task timeout with a reason naming them,
or carries on without them when the spec's quorum allows."""

from __future__ import annotations

import json

from consumer_client import Client
from fedsynth.security.principals import Role
from tests.federation.harness import STRICT, SUPPLIERS, Federation, job


def test_silent_supplier_fails_the_job_after_the_timeout_or_is_left_out_under_a_quorum(
    federation: Federation,
) -> None:
    silent = federation.agents[STRICT]
    silent.stop()
    try:
        members = (*SUPPLIERS[:2], STRICT)
        strict_job = federation.submit(
            job("all-needed", "federated", members, timeouts={"task_s": 2})
        )
        quorum_job = federation.submit(
            job("two-of-three", "federated", members, timeouts={"task_s": 20}, quorum=2)
        )
        failed = federation.wait(strict_job)
        assert failed.state == "failed"
        assert STRICT in failed.reason and "timeouts.task_s=2" in failed.reason
        done = federation.wait(quorum_job)
        assert done.state == "succeeded", done.reason
    finally:
        silent.start()
    with Client(
        federation.broker.address, **federation.broker.identity(Role.CONSUMER, "alice")
    ) as client:
        (release,) = [r for r in client.list() if r.job_id == quorum_job]
        manifest = client.show(release.release_id)
    signers = {
        json.loads(v["payload"])["supplier"] for v in manifest.attestation["supplier_verdicts"]
    }
    assert signers == set(SUPPLIERS[:2])
