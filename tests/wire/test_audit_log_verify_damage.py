"""`fedsynth-broker audit-log verify` on damaged evidence: exit 2 with one line naming the file
when the log cannot be checked, 1 when it was tampered with, and the evidence left as found."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.cli import app
from fedsynth.security.atrest import create_key_file
from tests.wire.broker_harness import state_with_log

REPO = Path(__file__).resolve().parents[2]
CONFIG = """
federation: health-eu
state_dir: state
key_file: state/at-rest.key
tls: {ca: pki/ca.pem, cert: pki/broker/main.pem, key: pki/broker/main.key, crl: pki/crl.pem}
"""
ENTRIES = 4


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A broker config whose state holds an intact log of ENTRIES entries, in rollback-journal
    mode (as an evidence copy made with sqlite3's backup is), with no broker running."""
    state = tmp_path / "state"
    operator = "spiffe://health-eu/operator/ops"
    state_with_log(
        state, [(operator, "job.submitted", f"job-{i}", {"n": i}) for i in range(ENTRIES)]
    )
    with sqlite3.connect(state / "broker.sqlite3") as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    path = tmp_path / "broker.yaml"
    path.write_text(CONFIG)
    return path


def database(config: Path) -> Path:
    return config.parent / "state" / "broker.sqlite3"


def head(config: Path) -> Path:
    return config.parent / "state" / "audit-head.json"


def verify(config: Path) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `audit-log verify` run in-process."""
    result = CliRunner().invoke(app, ["audit-log", "verify", "--config", str(config)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_an_intact_log_verifies(config: Path) -> None:
    code, out, _ = verify(config)
    assert code == 0 and f"intact: {ENTRIES} entries" in out


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite database, just some bytes\n" * 200)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _emptied(path: Path) -> None:
    path.write_bytes(b"")


def _header_only(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize("damage", [_garbage, _truncated, _emptied, _header_only])
def test_an_unreadable_database_is_one_line_and_exit_2(
    config: Path, damage: Callable[[Path], None]
) -> None:
    damage(database(config))
    code, out, err = verify(config)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert str(database(config)) in err and "Traceback" not in err + out


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("{not json", "Expecting property name"),
        ('{"seq": 4}', "lacks 'mac'"),
        ("[4, 5]", "list indices"),
        ('{"seq": "4", "mac": "ab"}', "seq must be an integer"),
        ("", "Expecting value"),
    ],
)
def test_a_broken_head_file_is_one_line_and_exit_2(config: Path, text: str, what: str) -> None:
    head(config).write_text(text)
    code, out, err = verify(config)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert str(head(config)) in err and what in err


def test_a_head_file_that_is_not_utf8_is_exit_2(config: Path) -> None:
    head(config).write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = verify(config)
    assert code == 2 and str(head(config)) in err


def test_the_database_is_opened_read_only_and_left_as_found(config: Path) -> None:
    with sqlite3.connect(database(config)) as conn:
        conn.execute("DROP TABLE audit_log")
    before = hashlib.sha256(database(config).read_bytes()).hexdigest()
    code, out, err = verify(config)
    assert code == 1, (out, err)
    assert "audit_log table is missing" in err
    assert f"entries 1..{ENTRIES} were removed" in err
    assert hashlib.sha256(database(config).read_bytes()).hexdigest() == before
    with sqlite3.connect(database(config)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "audit_log" not in tables


def test_an_intact_check_changes_no_byte_of_the_database(config: Path) -> None:
    before = hashlib.sha256(database(config).read_bytes()).hexdigest()
    assert verify(config)[0] == 0
    assert hashlib.sha256(database(config).read_bytes()).hexdigest() == before
    assert not database(config).with_name("broker.sqlite3-wal").exists()


def test_the_wrong_key_file_is_named_once_not_every_entry(config: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    create_key_file(other)
    config.write_text(CONFIG.replace("key_file: state/at-rest.key", f"key_file: {other}"))
    code, out, err = verify(config)
    assert code == 1, (out, err)
    assert err.count("BROKEN") == 1, err
    assert "entry 1 does not verify" in err and f"wrong key_file ({other})" in err


def test_an_edited_entry_is_still_named_exit_1(config: Path) -> None:
    with sqlite3.connect(database(config)) as conn:
        conn.execute("UPDATE audit_log SET subject = 'job-x' WHERE seq = 2")
    code, _, err = verify(config)
    assert code == 1 and err.strip() == "BROKEN: entry 2 was altered (MAC does not match the chain)"


def test_a_rebuilt_table_with_values_of_other_types_is_tampering_not_a_crash(
    config: Path,
) -> None:
    with sqlite3.connect(database(config)) as conn:
        conn.execute("UPDATE audit_log SET mac = X'00ff' WHERE seq = 3")
    code, _, err = verify(config)
    assert code == 1 and "entry 3 was altered" in err and "Traceback" not in err


def test_the_console_script_prints_no_traceback_on_a_garbage_database(config: Path) -> None:
    _garbage(database(config))
    done = subprocess.run(
        [sys.executable, "-m", "broker.cli", "audit-log", "verify", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: cannot check the audit log: {database(config)}: cannot read the database: "
        "file is not a database"
    ]


def test_the_head_check_reads_the_head_it_was_given(config: Path) -> None:
    """A head file naming the last entry with its MAC agrees; one cut short is caught."""
    stored = json.loads(head(config).read_text())
    assert stored["seq"] == ENTRIES
    with sqlite3.connect(database(config)) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = ?", (ENTRIES,))
    code, _, err = verify(config)
    assert code == 1 and f"entries {ENTRIES}..{ENTRIES} were removed" in err
