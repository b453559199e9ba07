"""Property tests for the security building blocks: at-rest encryption, SPIFFE names,
signed documents, the audit-log chain and job spec hashing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.auditlog import MAX_DETAIL_CHARS, AuditLog
from broker.store import Database
from fedsynth.security.atrest import DecryptionError, SegmentWriter, read_segments
from fedsynth.security.attestation import AttestationError, sign_document, verify_document
from fedsynth.security.ca import FederationCA
from fedsynth.security.certificates import load_cert, load_key
from fedsynth.security.principals import (
    IdentityError,
    Role,
    parse_spiffe_uri,
    spiffe_uri,
)
from tests.wire.broker_harness import job_spec

KEY = bytes(range(32))
names = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,20}[a-z0-9])?", fullmatch=True)
blocks = st.lists(st.binary(max_size=200), max_size=8)


def encrypt(key: bytes, file_id: bytes, parts: list[bytes]) -> bytes:
    fh = io.BytesIO()
    writer = SegmentWriter(key, file_id, fh)
    for part in parts:
        writer.write(part)
    writer.close()
    return fh.getvalue()


def decrypt(key: bytes, file_id: bytes, data: bytes) -> bytes:
    return b"".join(b for _, b in read_segments(key, file_id, io.BytesIO(data)))


@given(blocks)
def test_encryption_at_rest_round_trips(parts: list[bytes]) -> None:
    assert decrypt(KEY, b"f", encrypt(KEY, b"f", parts)) == b"".join(parts)


@given(blocks.filter(lambda p: sum(map(len, p)) > 0), st.data())
def test_any_flipped_bit_is_detected(parts: list[bytes], data: st.DataObject) -> None:
    sealed = bytearray(encrypt(KEY, b"f", parts))
    position = data.draw(st.integers(4, len(sealed) - 1))
    sealed[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises((DecryptionError, ValueError)):
        decrypt(KEY, b"f", bytes(sealed))


@given(blocks.filter(lambda p: len(p) >= 1))
def test_truncation_and_foreign_file_id_are_detected(parts: list[bytes]) -> None:
    sealed = encrypt(KEY, b"f", parts)
    last_segment = 4 + 12 + 16
    with pytest.raises(DecryptionError, match="truncated"):
        decrypt(KEY, b"f", sealed[:-last_segment])
    with pytest.raises(DecryptionError):
        decrypt(KEY, b"g", sealed)


@given(names, st.sampled_from(list(Role)), names)
def test_spiffe_uris_round_trip(federation: str, role: Role, name: str) -> None:
    assert parse_spiffe_uri(spiffe_uri(federation, role, name)) == (federation, role, name)


@given(st.text(max_size=60))
def test_spiffe_parser_accepts_only_well_formed_uris(text: str) -> None:
    try:
        federation, role, name = parse_spiffe_uri(text)
    except IdentityError:
        return
    assert text == spiffe_uri(federation, role, name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FederationCA:
    ca = FederationCA.init(tmp_path_factory.mktemp("pki"), "fed")
    ca.issue(Role.BROKER, "broker")
    ca.issue(Role.SUPPLIER, "hospital-a")
    return ca


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=5))
def test_signed_documents_verify_and_any_change_is_caught(
    pki: FederationCA, document: dict[str, object]
) -> None:
    cert, key = pki.paths_for(Role.BROKER, "broker")
    signed = sign_document(document, load_key(key), load_cert(cert))
    signer, parsed = verify_document(signed, pki.ca.cert, "fed", role=Role.BROKER)
    assert signer.name == "broker" and parsed == document
    forged = type(signed)(signed.payload + b" ", signed.signature, signed.certificate_pem)
    with pytest.raises(AttestationError):
        verify_document(forged, pki.ca.cert, "fed", role=Role.BROKER)
    with pytest.raises(AttestationError, match="expected a supplier"):
        verify_document(signed, pki.ca.cert, "fed", role=Role.SUPPLIER)


def test_audit_log_chain_verifies_until_an_entry_changes(tmp_path: Path) -> None:
    db = Database(tmp_path / "log.sqlite3")
    log = AuditLog(db, KEY, tmp_path / "head.json")
    for i in range(5):
        log.append("spiffe://fed/operator/ops", "job.submitted", f"job-{i}", n=i)
    assert log.verify().ok and log.verify().entries == 5
    with db.transaction() as conn:
        conn.execute("UPDATE audit_log SET detail_json = '{\"n\": 9}' WHERE seq = 4")
    assert log.verify().problems == ("entry 4 was altered (MAC does not match the chain)",)
    other_key = AuditLog(db, bytes(32), tmp_path / "head.json").verify()
    assert len(other_key.problems) == 1 and "entry 1 does not verify" in other_key.problems[0]
    assert "the wrong key" in other_key.problems[0]
    db.close()


def test_an_entry_appended_within_a_transaction_commits_or_rolls_back_with_it(
    tmp_path: Path,
) -> None:
    """A step's row and its audit entry were two transactions: a broker killed between them
    kept the step and lost the entry (seen as a missing `job.step` after a restart)."""
    db = Database(tmp_path / "log.sqlite3")
    log = AuditLog(db, KEY, tmp_path / "head.json")
    log.append("spiffe://fed/broker/broker", "broker.started", "b")
    db.create_tables("CREATE TABLE IF NOT EXISTS steps (name TEXT);")
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO steps VALUES ('lost')")
        log.append_within(conn, "spiffe://fed/broker/broker", "job.step", "job-1", step="lost")
        raise RuntimeError("killed")
    with db.transaction() as conn:
        conn.execute("INSERT INTO steps VALUES ('kept')")
        log.append_within(conn, "spiffe://fed/broker/broker", "job.step", "job-1", step="kept")
    log.sync_head()
    assert [e.detail.get("step") for e in log.entries()] == [None, "kept"]
    assert db.query("SELECT name FROM steps")[0]["name"] == "kept"
    assert log.verify().ok and '"seq": 2' in (tmp_path / "head.json").read_text()
    db.close()


def test_a_transaction_opened_inside_another_joins_it(tmp_path: Path) -> None:
    """Ending a job, rejecting a candidate and publishing a release write their rows through
    the store and their audit entries in one outer transaction: all or nothing."""
    db = Database(tmp_path / "state.sqlite3")
    db.create_tables("CREATE TABLE IF NOT EXISTS t (v TEXT);")
    with pytest.raises(RuntimeError), db.transaction():
        with db.transaction() as inner:
            inner.execute("INSERT INTO t VALUES ('inner')")
        raise RuntimeError("after the inner block")
    assert db.query("SELECT v FROM t") == []
    with db.transaction(), db.transaction() as inner:
        inner.execute("INSERT INTO t VALUES ('kept')")
    assert [r["v"] for r in db.query("SELECT v FROM t")] == ["kept"]
    with db.transaction() as conn:  # a fresh transaction opens after the joined ones
        conn.execute("INSERT INTO t VALUES ('next')")
    assert len(db.query("SELECT v FROM t")) == 2
    db.close()


def test_an_audit_entry_keeps_the_start_of_an_oversized_detail(tmp_path: Path) -> None:
    db = Database(tmp_path / "log.sqlite3")
    log = AuditLog(db, KEY, tmp_path / "head.json")
    entry = log.append("spiffe://fed/supplier/a", "task.result", "t1", error="E" * 100_000)
    assert entry.detail["cut"] > 100_000 and entry.detail["start"].startswith('{"error": "EEE')
    stored = db.query("SELECT detail_json FROM audit_log")[0]["detail_json"]
    assert len(stored) < MAX_DETAIL_CHARS
    assert log.verify().ok
    db.close()


def test_job_spec_hash_ignores_formatting_but_not_content() -> None:
    spec = job_spec()
    reparsed = type(spec).from_json(spec.model_dump_json(by_alias=True, indent=4))
    assert reparsed.spec_hash == spec.spec_hash
    assert job_spec("other-name").spec_hash != spec.spec_hash
