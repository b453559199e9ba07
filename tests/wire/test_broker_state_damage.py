"""A broker whose state_dir is damaged refuses to start with one line that says what to
restore, instead of replacing its at-rest key (which left its audit log unverifiable and its
encrypted rows unreadable) or dying with a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import BrokerConfig
from broker.state import BrokerState, StateError
from fedsynth.security.atrest import create_key_file
from tests.wire.broker_harness import BrokerProcess, make_broker


@pytest.fixture
def opened(tmp_path: Path) -> BrokerProcess:
    """A broker (not running) whose state has been opened once: database and key written."""
    broker = make_broker(tmp_path)
    state = BrokerState.open(BrokerConfig.load(broker.config_path))
    state.audit.append("spiffe://fed/operator/ops", "job.submitted", "job-1")
    state.db.close()
    return broker


@pytest.fixture
def config(opened: BrokerProcess) -> BrokerConfig:
    return BrokerConfig.load(opened.config_path)


def test_a_missing_key_of_an_existing_state_is_not_replaced(
    config: BrokerConfig, opened: BrokerProcess
) -> None:
    config.key_file.unlink()
    refused = opened.serve_once()
    assert refused.returncode == 2, refused.stderr
    assert f"key_file {config.key_file} is missing" in refused.stderr
    assert "restore the key file from backup" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not config.key_file.exists()


def test_another_key_is_refused_by_its_fingerprint(config: BrokerConfig) -> None:
    config.key_file.unlink()
    create_key_file(config.key_file)
    with pytest.raises(StateError, match="not the key this state_dir was created with"):
        BrokerState.open(config)


def test_a_damaged_database_stops_the_broker_in_one_line(
    config: BrokerConfig, opened: BrokerProcess
) -> None:
    data = config.database.read_bytes()
    config.database.write_bytes(data[: len(data) // 2])
    for suffix in ("-wal", "-shm"):
        config.database.with_name(config.database.name + suffix).unlink(missing_ok=True)
    refused = opened.serve_once()
    assert refused.returncode == 2, refused.stderr
    assert "is damaged or unreadable" in refused.stderr and "restore state_dir" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_new_state_gets_a_key_and_reopens_with_it(tmp_path: Path) -> None:
    settings = BrokerConfig.load(make_broker(tmp_path).config_path)
    BrokerState.open(settings).db.close()
    assert settings.key_file.exists()
    BrokerState.open(settings).db.close()


def test_verify_with_another_key_cannot_check_rather_than_crying_tampering(
    config: BrokerConfig, opened: BrokerProcess
) -> None:
    """A wrong key_file made `audit-log verify` exit 1 (entries altered), the tampering alarm."""
    config.key_file.unlink()
    create_key_file(config.key_file)
    checked = opened.run_cli("audit-log", "verify")
    assert checked.returncode == 2, checked.stderr
    assert "is not the key of this broker's state" in checked.stderr
    assert "BROKEN" not in checked.stderr
