"""`fedsynth-broker audit-log show`: the audit log's entries as a table or JSON lines, filtered by
job, subject, action, time and count, read-only (beside a running broker too), with verify's
exit codes: 2 when the file cannot be read, 1 when the log's table is gone."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from broker.cli import app
from tests.wire.broker_harness import BrokerProcess, state_with_log, submit_job

CONFIG = """
federation: health-eu
state_dir: state
key_file: state/at-rest.key
tls: {ca: pki/ca.pem, cert: pki/broker/main.pem, key: pki/broker/main.key, crl: pki/crl.pem}
"""
OPS = "spiffe://health-eu/operator/ops"
BROKER = "spiffe://health-eu/broker/main"
SITE = "spiffe://health-eu/supplier/hospital-a"
ENTRIES: list[tuple[str, str, str, dict[str, Any]]] = [
    (BROKER, "broker.started", "127.0.0.1:7443", {}),
    (OPS, "job.submitted", "job-1", {"name": "demo", "topology": "central"}),
    (BROKER, "job.started", "job-1", {}),
    (SITE, "upload.begin", "up-1", {"job_id": "job-1", "size": 10}),
    (OPS, "job.submitted", "job-2", {"name": "other", "topology": "central"}),
    (SITE, "upload.rejected", "up-2", {"reason": "sha256 mismatch"}),
    (BROKER, "release.published", "rel-1", {"job_id": "job-1", "candidate_id": "cand-1"}),
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A broker config whose state dir holds the log of ENTRIES, no broker running."""
    state_with_log(tmp_path / "state", ENTRIES)
    path = tmp_path / "broker.yaml"
    path.write_text(CONFIG)
    return path


def database(config: Path) -> Path:
    return config.parent / "state" / "broker.sqlite3"


def show(config: Path, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `audit-log show` run in-process."""
    result = CliRunner().invoke(app, ["audit-log", "show", "--config", str(config), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def shown(config: Path, *args: str) -> list[dict[str, Any]]:
    """The entries `show --json` prints."""
    code, out, err = show(config, "--json", *args)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_every_entry_is_shown_oldest_first_as_json_lines(config: Path) -> None:
    entries = shown(config)
    assert [e["seq"] for e in entries] == list(range(1, len(ENTRIES) + 1))
    assert [(e["actor"], e["action"], e["subject"], e["detail"]) for e in entries] == ENTRIES
    assert set(entries[0]) == {"seq", "at", "actor", "action", "subject", "detail"}
    assert datetime.fromisoformat(entries[0]["at"]).tzinfo is not None


def test_the_table_has_a_header_and_one_aligned_line_per_entry(config: Path) -> None:
    code, out, _ = show(config)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 1 + len(ENTRIES)
    assert lines[0].split() == ["SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT", "DETAILS"]
    assert len({line.index(" job.") for line in lines if " job." in line}) == 1
    assert lines[2].split()[2:] == [OPS, "job.submitted", "job-1", "name=demo", "topology=central"]
    assert lines[6].endswith('reason="sha256 mismatch"')


def test_job_selects_the_jobs_entries_and_those_naming_it(config: Path) -> None:
    entries = shown(config, "--job", "job-1")
    assert [e["seq"] for e in entries] == [2, 3, 4, 7]


def test_subject_action_since_and_last(config: Path) -> None:
    assert [e["seq"] for e in shown(config, "--subject", "up-2")] == [6]
    assert [e["seq"] for e in shown(config, "--action", "job.submitted")] == [2, 5]
    assert [e["seq"] for e in shown(config, "--action", "upload.*")] == [4, 6]
    assert [e["seq"] for e in shown(config, "--action", "job.*", "--last", "2")] == [3, 5]
    assert [e["seq"] for e in shown(config, "--last", "1")] == [len(ENTRIES)]
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert len(shown(config, "--since", hour_ago)) == len(ENTRIES)
    today_naive = datetime.now(UTC).strftime("%Y-%m-%d")  # UTC, as no offset is given
    assert len(shown(config, "--since", today_naive)) == len(ENTRIES)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    code, out, err = show(config, "--since", tomorrow)
    assert (code, out, err.strip()) == (0, "", "no entries match")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--job", "job-1", "--subject", "up-1"), "give --job or --subject, not both"),
        (("--since", "last tuesday"), "--since 'last tuesday' is not an ISO-8601 time"),
        (("--last", "0"), "--last"),
    ],
)
def test_bad_options_exit_2(config: Path, args: tuple[str, ...], message: str) -> None:
    code, out, err = show(config, *args)
    assert code == 2 and message in err and out == ""


def test_an_unreadable_database_is_one_line_and_exit_2(config: Path) -> None:
    database(config).write_bytes(b"not a database at all\n" * 100)
    code, _, err = show(config)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(database(config)) in err and "Traceback" not in err


def test_no_database_is_exit_2(config: Path) -> None:
    database(config).unlink()
    code, _, err = show(config)
    assert code == 2 and f"{database(config)}: no broker database there" in err


def test_a_dropped_table_is_exit_1_and_the_file_is_left_as_found(config: Path) -> None:
    with sqlite3.connect(database(config)) as conn:
        conn.execute("DROP TABLE audit_log")
    before = hashlib.sha256(database(config).read_bytes()).hexdigest()
    code, _, err = show(config)
    assert code == 1 and "audit_log table is missing" in err
    assert hashlib.sha256(database(config).read_bytes()).hexdigest() == before


def test_showing_changes_no_byte_of_the_database(config: Path) -> None:
    with sqlite3.connect(database(config)) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    before = hashlib.sha256(database(config).read_bytes()).hexdigest()
    assert show(config)[0] == 0
    assert hashlib.sha256(database(config).read_bytes()).hexdigest() == before
    assert not database(config).with_name("broker.sqlite3-wal").exists()


def test_tampered_rows_are_shown_as_text_not_a_crash(config: Path) -> None:
    with sqlite3.connect(database(config)) as conn:
        conn.execute("UPDATE audit_log SET detail_json = 'not json' WHERE seq = 2")
        conn.execute("UPDATE audit_log SET subject = X'ff00' WHERE seq = 3")
        conn.execute("UPDATE audit_log SET actor = 'evil\nSEQ forged line' WHERE seq = 4")
    entries = shown(config)
    assert entries[1]["detail"] == {"detail_json": "not json"}
    assert entries[2]["subject"] == "\ufffd\x00"
    code, out, _ = show(config)
    assert code == 0 and len(out.splitlines()) == 1 + len(ENTRIES)
    assert '"evil\\nSEQ forged line"' in out


def test_show_beside_a_running_broker(broker: BrokerProcess) -> None:
    job_id = submit_job(broker, name="shown-job")
    done = broker.run_cli("audit-log", "show", "--job", job_id, "--json")
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    submitted = [e for e in entries if e["action"] == "job.submitted"]
    assert len(submitted) == 1 and submitted[0]["detail"]["name"] == "shown-job"
    assert submitted[0]["actor"].endswith("/operator/ops")
    assert all(job_id in (e["subject"], e["detail"].get("job_id")) for e in entries)
    started = broker.run_cli("audit-log", "show", "--action", "broker.started", "--last", "1")
    assert started.returncode == 0 and "broker.started" in started.stdout.splitlines()[1]
