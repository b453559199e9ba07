"""Releases end to end: publish through `broker.releases.publish`, pull with the consumer client,
refuse what fails the audit or was altered on the broker's disk, survive a restart."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from broker.releases import Published, ReleaseRefused, publish
from broker.state import BrokerState
from broker.steps import parquet_bytes
from consumer_client import Client, ReleaseVerificationError, csv_output
from consumer_client.client import MAX_AUDIT_HTML_BYTES
from fedsynth.operator.client import OperatorClient
from fedsynth.security.attestation import VERDICT_FORMAT, SignedDocument, sign_document
from fedsynth.security.ca import FederationCA
from fedsynth.security.certificates import load_cert, load_key
from fedsynth.security.principals import Role
from fedsynth.wire.transfer import resume_path
from fedsynth.wire.v1 import common_pb2, consumer_pb2, consumer_pb2_grpc
from tests.wire.broker_harness import (
    FEDERATION,
    BrokerProcess,
    job_spec,
    released,
    submit_job,
)

FRAME = pd.DataFrame({"age": [34, 51, 29, 77], "sex": ["F", "M", "F", "M"]})


@pytest.fixture(scope="module")
def job_id(broker: BrokerProcess) -> str:
    return submit_job(broker)


def supplier_verdict(
    broker: BrokerProcess, role: Role, name: str, verdict: str, job_id: str
) -> SignedDocument:
    """`name`'s signed verdict on FRAME, the dataset `publish_candidate` releases by default."""
    ids = broker.identity(role, name)
    document = {
        "format": VERDICT_FORMAT,
        "supplier": name,
        "job_id": job_id,
        "verdict": verdict,
        "dataset_sha256": hashlib.sha256(parquet_bytes(FRAME)).hexdigest(),
        "report_sha256": "b" * 64,
    }
    return sign_document(document, load_key(ids["key"]), load_cert(ids["cert"]))


def publish_candidate(
    state: BrokerState,
    job_id: str,
    verdict: str = "pass",
    supplier_verdicts: list[SignedDocument] | None = None,
    frame: pd.DataFrame = FRAME,
    audit_html: bytes = b"<html><body>audit</body></html>",
) -> Published:
    report = {"verdict": verdict, "reasons": [] if verdict == "pass" else ["DCR below threshold"]}
    return publish(
        state,
        job_id=job_id,
        name="patients-demo",
        dataset=parquet_bytes(frame),
        audit_report_json=json.dumps(report).encode(),
        audit_html=audit_html,
        job_spec_hash=job_spec().spec_hash,
        topology="central",
        synthesizer="copula",
        privacy_spent={"epsilon": 1.0, "delta": 1e-6},
        supplier_verdicts=supplier_verdicts or [],
    )


def consumer(broker: BrokerProcess) -> Client:
    return Client(broker.address, **broker.identity(Role.CONSUMER, "alice"))


def test_passing_candidate_is_released_and_pulled_verified(
    broker: BrokerProcess, state: BrokerState, job_id: str, tmp_path: Path
) -> None:
    verdicts = [supplier_verdict(broker, Role.SUPPLIER, "hospital-a", "pass", job_id)]
    published = publish_candidate(state, job_id, supplier_verdicts=verdicts)
    with consumer(broker) as client:
        assert published.release_id in [r.release_id for r in client.list()]
        manifest = client.show(published.release_id)
        assert manifest.attestation["job_spec_sha256"] == job_spec().spec_hash
        assert manifest.attestation["privacy_spent"]["epsilon"] == 1.0
        assert len(manifest.attestation["supplier_verdicts"]) == 1
        pd.testing.assert_frame_equal(client.pull(published.release_id), FRAME)
        client.pull_to(published.release_id, tmp_path / "out.csv")
    assert pd.read_csv(tmp_path / "out.csv").equals(FRAME)


def test_failing_candidate_is_rejected_kept_for_operators_and_hidden_from_consumers(
    broker: BrokerProcess, state: BrokerState, job_id: str
) -> None:
    with pytest.raises(ReleaseRefused) as refused:
        publish_candidate(state, job_id, verdict="fail", frame=FRAME.head(2))
    candidate_id = refused.value.candidate_id
    with OperatorClient(broker.address, **broker.identity(Role.OPERATOR, "ops")) as ops:
        rejected = {c.candidate_id: c for c in ops.candidates(job_id)}[candidate_id]
    assert rejected.verdict == "fail" and rejected.release_id == ""
    assert "DCR below threshold" in list(rejected.reasons)
    stub = consumer_pb2_grpc.ConsumerServiceStub(broker.channel(Role.CONSUMER, "alice"))
    with pytest.raises(grpc.RpcError) as info:
        stub.GetRelease(common_pb2.ReleaseRef(release_id=candidate_id), timeout=20)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    request = consumer_pb2.DownloadRequest(
        release_id=candidate_id, part=consumer_pb2.RELEASE_PART_DATASET
    )
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Download(request, timeout=20))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_failing_or_forged_supplier_verdict_blocks_the_release(
    broker: BrokerProcess, state: BrokerState, job_id: str
) -> None:
    failing = [supplier_verdict(broker, Role.SUPPLIER, "hospital-b", "fail", job_id)]
    with pytest.raises(ReleaseRefused, match="hospital-b"):
        publish_candidate(state, job_id, supplier_verdicts=failing, frame=FRAME.head(3))
    forged = [supplier_verdict(broker, Role.CONSUMER, "alice", "pass", job_id)]
    with pytest.raises(ReleaseRefused, match="expected a supplier"):
        publish_candidate(state, job_id, supplier_verdicts=forged, frame=FRAME.head(1))


def test_consumer_refuses_a_dataset_altered_on_the_brokers_disk(
    broker: BrokerProcess, state: BrokerState, job_id: str, tmp_path: Path
) -> None:
    frame = FRAME.assign(age=FRAME["age"] + 1)
    published = publish_candidate(state, job_id, frame=frame)
    stored = state.artifacts.path(published.attestation["dataset"]["sha256"])
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    out = tmp_path / "tampered.parquet"
    with consumer(broker) as client, pytest.raises(ReleaseVerificationError, match="altered"):
        client.pull_to(published.release_id, out)
    assert not out.exists()


def test_a_dataset_grown_on_the_brokers_disk_is_refused_before_any_byte_is_written(
    broker: BrokerProcess, state: BrokerState, job_id: str, tmp_path: Path
) -> None:
    # Artifacts are stored by hash: a frame and a page of their own, grown for this test alone.
    published = publish_candidate(state, job_id, frame=FRAME.assign(age=FRAME["age"] + 30))
    size = int(published.attestation["dataset"]["size"])
    stored = state.artifacts.path(published.attestation["dataset"]["sha256"])
    stored.chmod(0o600)
    os.truncate(stored, size + 200 * 1024 * 1024)
    out = tmp_path / "grown.parquet"
    with (
        consumer(broker) as client,
        pytest.raises(
            ReleaseVerificationError,
            match=f"announces {size + 200 * 1024 * 1024} bytes, but {size}",
        ),
    ):
        client.pull_to(published.release_id, out, on_progress=lambda *_: pytest.fail("written"))
    assert list(tmp_path.iterdir()) == []


def test_an_audit_page_grown_past_the_cap_on_the_brokers_disk_is_refused_before_any_byte(
    broker: BrokerProcess, state: BrokerState, job_id: str, tmp_path: Path
) -> None:
    published = publish_candidate(
        state,
        job_id,
        frame=FRAME.assign(age=FRAME["age"] + 40),
        audit_html=b"<html><body>audit of a page grown on the broker</body></html>",
    )
    stored = state.artifacts.path(published.attestation["audit_html"]["sha256"])
    stored.chmod(0o600)
    os.truncate(stored, MAX_AUDIT_HTML_BYTES + 1)
    out = tmp_path / "audit.html"
    with (
        consumer(broker) as client,
        pytest.raises(ReleaseVerificationError, match=f"at most {MAX_AUDIT_HTML_BYTES} are taken"),
    ):
        client.audit_html_to(published.release_id, out)
    assert list(tmp_path.iterdir()) == []


def test_a_release_whose_object_the_broker_lost_is_data_loss_without_its_path(
    broker: BrokerProcess, state: BrokerState, job_id: str, tmp_path: Path
) -> None:
    """A consumer got UNKNOWN with the broker's artifact path in the message."""
    published = publish_candidate(state, job_id, frame=FRAME.assign(age=FRAME["age"] + 2))
    state.artifacts.path(published.attestation["dataset"]["sha256"]).unlink()
    stub = consumer_pb2_grpc.ConsumerServiceStub(broker.channel(Role.CONSUMER, "alice"))
    request = consumer_pb2.DownloadRequest(
        release_id=published.release_id, part=consumer_pb2.RELEASE_PART_DATASET
    )
    with pytest.raises(grpc.RpcError) as lost:
        next(iter(stub.Download(request, timeout=20)))
    assert lost.value.code() == grpc.StatusCode.DATA_LOSS
    assert "restore the broker's artifacts from backup" in lost.value.details()
    assert str(broker.state_dir) not in lost.value.details()
    missing = [e for e in state.audit.entries() if e.action == "release.object_missing"]
    assert missing[-1].subject == published.release_id


@pytest.mark.parametrize("column", ["signature", "attestation_json"])
def test_consumer_refuses_an_attestation_altered_on_the_brokers_disk(
    broker: BrokerProcess, state: BrokerState, job_id: str, tmp_path: Path, column: str
) -> None:
    published = publish_candidate(state, job_id, frame=FRAME.assign(age=FRAME["age"] + 2))
    with sqlite3.connect(broker.state_dir / "broker.sqlite3") as db:
        (value,) = db.execute(
            f"SELECT {column} FROM releases WHERE release_id = ?", (published.release_id,)
        ).fetchone()
        altered = bytearray(value)
        if column == "signature":
            altered[-3] ^= 0x01
        else:
            altered = bytearray(bytes(altered).replace(b'"central"', b'"local"'))
        db.execute(
            f"UPDATE releases SET {column} = ? WHERE release_id = ?",
            (bytes(altered), published.release_id),
        )
    out = tmp_path / "refused.parquet"
    with consumer(broker) as client, pytest.raises(ReleaseVerificationError, match="signature"):
        client.pull_to(published.release_id, out)
    assert not out.exists()


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("name", "cardiology-gold", "name"),
        ("topology", "local", "topology"),
        ("dataset_size", 1, "dataset size"),
        ("job_id", "job-other", "job"),
        ("synthesizer", "ctgan", "synthesizer"),
    ],
)
def test_show_and_pull_refuse_a_listed_summary_edited_on_the_brokers_disk(
    broker: BrokerProcess,
    state: BrokerState,
    job_id: str,
    tmp_path: Path,
    column: str,
    value: object,
    field: str,
) -> None:
    published = publish_candidate(state, job_id, frame=FRAME.assign(age=FRAME["age"] + 5))
    with sqlite3.connect(broker.state_dir / "broker.sqlite3") as db:
        db.execute(
            f"UPDATE releases SET {column} = ? WHERE release_id = ?",
            (value, published.release_id),
        )
    out = tmp_path / "refused.parquet"
    with consumer(broker) as client:
        listed = {r.release_id: r for r in client.list()}[published.release_id]
        assert getattr(listed, column) == value
        with pytest.raises(ReleaseVerificationError, match=f"listed {field} .* differs"):
            client.show(published.release_id)
        with pytest.raises(ReleaseVerificationError, match=f"listed {field} .* differs"):
            client.pull_to(published.release_id, out)
    assert list(tmp_path.iterdir()) == []


def test_releases_jobs_and_audit_log_survive_a_broker_restart(
    broker: BrokerProcess, state: BrokerState, job_id: str
) -> None:
    published = publish_candidate(state, job_id, frame=FRAME.assign(age=FRAME["age"] + 3))
    broker.stop()
    broker.start()
    with OperatorClient(broker.address, **broker.identity(Role.OPERATOR, "ops")) as ops:
        assert ops.status(job_id).state in ("submitted", "running")
    with consumer(broker) as client:
        assert len(client.pull(published.release_id)) == len(FRAME)
    result = broker.run_cli("audit-log", "verify")
    assert result.returncode == 0, result.stderr
    actions = [e.action for e in state.audit.entries()]
    assert actions.count("broker.started") == 2
    assert {"job.submitted", "release.published", "candidate.rejected", "release.pulled"} <= set(
        actions
    )


def copy_of_state(broker: BrokerProcess, tmp_path: Path) -> Path:
    """A config pointing at a consistent copy of the broker's state (the live one stays intact)."""
    copy = tmp_path / "state"
    copy.mkdir()
    with (
        sqlite3.connect(broker.state_dir / "broker.sqlite3") as src,
        sqlite3.connect(copy / "broker.sqlite3") as dst,
    ):
        src.backup(dst)
    for name in ("at-rest.key", "audit-head.json"):
        shutil.copy2(broker.state_dir / name, copy / name)
    config = yaml.safe_load(broker.config_path.read_text())
    config.update(state_dir=str(copy), key_file=str(copy / "at-rest.key"))
    path = tmp_path / "broker.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def verify(broker: BrokerProcess, config: Path) -> tuple[int, str]:
    result = BrokerProcess(broker.root, broker.pki, config, "", "").run_cli("audit-log", "verify")
    return result.returncode, result.stdout + result.stderr


def test_audit_log_verify_detects_an_edited_entry(broker: BrokerProcess, tmp_path: Path) -> None:
    config = copy_of_state(broker, tmp_path)
    assert verify(broker, config)[0] == 0
    with sqlite3.connect(tmp_path / "state" / "broker.sqlite3") as db:
        db.execute("UPDATE audit_log SET actor = 'spiffe://testfed/operator/mallory' WHERE seq = 3")
    code, output = verify(broker, config)
    assert code == 1 and "entry 3 was altered" in output


@pytest.mark.parametrize("where", ["seq = 2", "seq = (SELECT MAX(seq) FROM audit_log)"])
def test_audit_log_verify_detects_a_removed_entry(
    broker: BrokerProcess, tmp_path: Path, where: str
) -> None:
    config = copy_of_state(broker, tmp_path)
    with sqlite3.connect(tmp_path / "state" / "broker.sqlite3") as db:
        db.execute(f"DELETE FROM audit_log WHERE {where}")
    code, output = verify(broker, config)
    assert code == 1 and ("missing" in output or "removed" in output)


def test_the_consumer_client_loads_neither_pandas_nor_pyarrow_until_a_frame_is_asked_for() -> None:
    probe = (
        "import sys, consumer_client, consumer_client.cli; "
        "print(sorted(m for m in ('pandas', 'pyarrow') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert loaded.stdout.strip() == "[]"


def test_unusable_identity_files_are_named_before_anything_is_dialled(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    ids = broker.identity(Role.CONSUMER, "alice")
    other_key = broker.identity(Role.OPERATOR, "ops")["key"]
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    stranger = FederationCA.init(tmp_path / "other-ca", FEDERATION)
    foreign_cert, foreign_key = stranger.issue(Role.CONSUMER, "alice")
    old_cert, old_key = broker.pki.issue(
        Role.CONSUMER, "old-alice", days=1, valid_from=datetime.now(UTC) - timedelta(days=10)
    )
    cases = {
        "not an unencrypted PEM private key": {"key": empty},
        "not a PEM certificate": {"cert": empty},
        "does not belong to --cert": {"key": other_key},
        "is a folder": {"ca": tmp_path},
        "is not issued by the CA in --ca": {"cert": foreign_cert, "key": foreign_key},
        "expired on": {"cert": old_cert, "key": old_key},
    }
    for reason, swap in cases.items():
        files = ids | swap
        done = subprocess.run(
            [sys.executable, "-m", "consumer_client.cli", "--broker", broker.address]
            + [f"--{flag}={files[flag]}" for flag in ("ca", "cert", "key")]
            + ["list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, (reason, done.returncode, done.stderr)
        assert reason in done.stderr


class _Interrupt(Exception):
    """Stands for Ctrl-C or a killed process in the middle of a pull."""


def test_an_interrupted_pull_resumes_where_it_stopped_in_a_new_client(
    broker: BrokerProcess, state: BrokerState, job_id: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"age": rng.integers(0, 120, 200_000), "sex": rng.choice(["F", "M"], 200_000)}
    )
    published = publish_candidate(state, job_id, frame=frame)
    size = int(published.attestation["dataset"]["size"])
    out = tmp_path / "big.parquet"

    def stop_midway(done: int, total: int) -> None:
        if done > total // 2:
            raise _Interrupt

    with consumer(broker) as client, pytest.raises(_Interrupt):
        client.pull_to(published.release_id, out, on_progress=stop_midway)
    assert not out.exists()
    (partial,) = tmp_path.glob(".big.parquet.*.part")
    kept = partial.stat().st_size
    assert size // 2 < kept < size
    progress: list[int] = []
    with consumer(broker) as client:
        client.pull_to(published.release_id, out, on_progress=lambda done, _: progress.append(done))
    assert progress[0] > kept
    assert not partial.exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame)


def test_a_pull_paused_past_its_deadline_resumes_from_the_bytes_received(
    broker: BrokerProcess, state: BrokerState, job_id: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"noise": [rng.bytes(1024) for _ in range(16_000)]})
    published = publish_candidate(state, job_id, frame=frame)
    deadline_s = 1.0 + int(published.attestation["dataset"]["size"]) / 10e6
    paused: list[int] = []

    def pause_once(done: int, total: int) -> None:
        if not paused:
            paused.append(done)
            time.sleep(deadline_s + 0.5)

    out = tmp_path / "slow.parquet"
    ids = broker.identity(Role.CONSUMER, "alice")
    with Client(broker.address, **ids, timeout=1.0) as client:
        client.pull_to(published.release_id, out, on_progress=pause_once)
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame)
    resumed = [
        e
        for e in state.audit.entries()
        if e.action == "release.pull_resumed" and e.subject == published.release_id
    ]
    assert resumed


def test_a_pull_whose_kept_bytes_were_damaged_fetches_the_release_again(
    broker: BrokerProcess, state: BrokerState, job_id: str, tmp_path: Path
) -> None:
    published = publish_candidate(state, job_id)
    out = tmp_path / "damaged.parquet"
    sha256 = published.attestation["dataset"]["sha256"]
    resume_path(out, sha256).write_bytes(b"not what the broker holds")
    with consumer(broker) as client:
        client.pull_to(published.release_id, out)
    pd.testing.assert_frame_equal(pd.read_parquet(out), FRAME)
    assert not list(tmp_path.glob(".*.part"))


def pulls_of(state: BrokerState, release_id: str) -> list[str]:
    """The Download calls the broker logged for `release_id`, oldest first."""
    return [
        e.action
        for e in state.audit.entries()
        if e.subject == release_id and e.action.startswith("release.pull")
    ]


def test_a_csv_conversion_that_did_not_finish_keeps_the_download_for_the_next_pull(
    broker: BrokerProcess,
    state: BrokerState,
    job_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published = publish_candidate(state, job_id)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "out.csv"
    monkeypatch.setattr(pd.DataFrame, "to_csv", interrupted)
    with consumer(broker) as client, pytest.raises(KeyboardInterrupt):
        client.pull_to(published.release_id, out)
    assert [p.name for p in tmp_path.iterdir()] == [".out.csv.parquet"]
    monkeypatch.undo()
    with consumer(broker) as client:
        client.pull_to(published.release_id, out)
    assert pulls_of(state, published.release_id) == ["release.pulled"]
    assert pd.read_csv(out).equals(FRAME)
    assert list(tmp_path.iterdir()) == [out]


def test_a_kept_csv_download_that_no_longer_matches_the_release_is_fetched_again(
    broker: BrokerProcess, state: BrokerState, job_id: str, tmp_path: Path
) -> None:
    published = publish_candidate(state, job_id)
    out = tmp_path / "out.csv"
    FRAME.assign(age=0).to_parquet(tmp_path / ".out.csv.parquet", index=False)
    with consumer(broker) as client:
        client.pull_to(published.release_id, out)
    assert pulls_of(state, published.release_id) == ["release.pulled"]
    assert pd.read_csv(out).equals(FRAME)
    assert list(tmp_path.iterdir()) == [out]


def every_csv_kind(rows: int) -> bytes:
    """A table of `rows` rows (at most 10) with a column of each kind the CSV formats its own
    way, as Parquet bytes. Only rows 8-9 carry a null in `visits` or a fraction of a second in
    `seen`, and rows 0-3 of `seen` are all midnight: pandas formats both by the whole column."""
    frame = pd.DataFrame(
        {
            "age": range(10),
            "score": [0.1, 1.0, np.nan, 1e20, 2.5, -0.0, 1 / 3, 7.0, 1e-7, 3.25],
            "count": pd.array([1, None, 3, 4, 5, 6, 7, None, 9, 10], dtype="Int64"),
            "smoker": pd.array([True, None, False, True] * 2 + [None, False], dtype="boolean"),
            "sex": pd.Categorical(["F", "M", None, "F", "M"] * 2),
            "born": [date(1990, 1, day) for day in range(1, 11)],
            "seen": pd.to_datetime(
                [f"2024-03-0{day}" for day in range(1, 5)]
                + ["2024-03-05 10:00", None, "2024-03-07 12:30:15", "2024-03-08 01:02:03"]
                + ["2024-03-09 00:00:00.25", "2024-03-10"],
                format="ISO8601",
            ),
            "admitted": pd.to_datetime(
                ["2024-03-01 00:00:00.5"] + [f"2024-03-0{day}" for day in range(2, 10)] + [None],
                format="ISO8601",
            ).tz_localize("Europe/Paris"),
            "note": ["a", None, "b,c", 'say "hi"', "", "x", "y", "z", "w", "v"],
        }
    )
    table = pa.Table.from_pandas(frame, preserve_index=False).append_column(
        "visits", pa.array([1, 2, 3, 4, 5, 6, 7, 8, None, 10], pa.int64())
    )
    buffer = io.BytesIO()
    pq.write_table(table.slice(0, rows), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("rows", [10, 0])
def test_a_csv_pull_writes_a_batch_at_a_time_what_the_whole_table_would_write(
    rows: int,
    broker: BrokerProcess,
    state: BrokerState,
    job_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = every_csv_kind(rows)
    published = released(state, job_id, f"every-csv-kind-{rows}", dataset)
    expected = pq.read_table(io.BytesIO(dataset)).to_pandas().to_csv(index=False)
    written: list[int] = []
    to_csv = pd.DataFrame.to_csv

    def counted(frame: pd.DataFrame, *args: Any, **kwargs: Any) -> str | None:
        written.append(len(frame))
        return to_csv(frame, *args, **kwargs)

    monkeypatch.setattr(csv_output, "BATCH_ROWS", 4)
    monkeypatch.setattr(pd.DataFrame, "to_csv", counted)
    out = tmp_path / "out.csv"
    with consumer(broker) as client:
        client.pull_to(published.release_id, out)
    assert out.read_bytes() == expected.encode()
    assert written and max(written) <= 4


def test_operators_see_every_verdict_and_reason_on_a_narrow_terminal(
    broker: BrokerProcess, state: BrokerState, job_id: str
) -> None:
    from typer.testing import CliRunner

    from fedsynth.operator.cli import app as operator_app

    with pytest.raises(ReleaseRefused):
        publish_candidate(state, job_id, verdict="fail")
    ids = broker.identity(Role.OPERATOR, "ops")
    args = ["--broker", broker.address, "--ca", str(ids["ca"]), "--cert", str(ids["cert"])]
    result = CliRunner().invoke(
        operator_app,
        [*args, "--key", str(ids["key"]), "releases", "--job", job_id],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    assert "verdict: fail" in result.output
    assert "reasons: DCR below threshold" in result.output


def test_a_step_failing_while_its_job_is_being_ended_sees_the_job_ended(
    state: BrokerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ending a job purges its rows before it sets the state; a step that failed on the purged
    rows must not read 'running' in between and be reported as a failure of its own."""
    from fedsynth.jobs import JobState

    spec = job_spec("ending")
    job = state.store.create_job(
        name=spec.name,
        topology=spec.topology.value,
        spec_json=spec.model_dump_json(by_alias=True).encode(),
        spec_sha256=spec.spec_hash,
        submitted_by="spiffe://test/operator/ops",
    )
    state.store.set_job_state(job.job_id, JobState.RUNNING)
    purging, release = threading.Event(), threading.Event()
    purge = state.uploads.purge_job

    def slow_purge(job_id: str, actor: str) -> int:
        purging.set()
        release.wait(30)
        return purge(job_id, actor)

    monkeypatch.setattr(state.uploads, "purge_job", slow_purge)
    ender = threading.Thread(
        target=state.end_job, args=(job.job_id, JobState.CANCELLED, "by ops", "ops")
    )
    ender.start()
    assert purging.wait(30)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.append(state.settled_state(job.job_id)))
    reader.start()
    assert state.store.job(job.job_id).state == JobState.RUNNING
    release.set()
    ender.join(30)
    reader.join(30)
    assert seen == [JobState.CANCELLED]


def test_a_job_cancelled_while_its_last_step_ran_releases_nothing(state: BrokerState) -> None:
    from broker.steps import JobContext, StepFailed, _release
    from fedsynth.jobs import JobState

    spec = job_spec("cancelled-late")
    job = state.store.create_job(
        name=spec.name,
        topology=spec.topology.value,
        spec_json=spec.model_dump_json(by_alias=True).encode(),
        spec_sha256=spec.spec_hash,
        submitted_by="spiffe://test/operator/ops",
    )
    state.store.set_job_state(job.job_id, JobState.RUNNING)
    ctx = JobContext(state, job, spec, {}, [])
    state.store.set_job_state(job.job_id, JobState.CANCELLED, "cancelled by ops")
    with pytest.raises(StepFailed, match="cancelled"):
        _release(ctx, parquet_bytes(FRAME), {"verdict": "pass"}, [])
    assert all(r.job_id != job.job_id for r in state.store.releases().rows)
    assert not state.store.candidates(job.job_id).rows
