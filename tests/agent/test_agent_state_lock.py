"""One agent per state_dir: a second `fedsynth-supplier run` on the same folder exits 2 naming
the process that holds it, instead of taking the first one's task stream and running its tasks
again; the lock is the broker's (`fedsynth.state_lock`), taken under another name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role
from fedsynth.state_lock import StateInUseError, StateLock

REPO = Path(__file__).resolve().parents[2]


def test_a_taken_state_dir_is_refused_naming_the_holder_until_it_is_released(
    tmp_path: Path,
) -> None:
    first = StateLock.acquire(tmp_path / "state", "agent")
    with pytest.raises(StateInUseError) as refused:
        StateLock.acquire(tmp_path / "state", "agent")
    assert str(refused.value) == (
        f"state_dir {tmp_path / 'state'} is in use by another agent (pid {os.getpid()}); stop "
        "it first or give this agent its own state_dir"
    )
    broker = StateLock.acquire(tmp_path / "state", "broker")
    with pytest.raises(StateInUseError, match="another broker"):
        StateLock.acquire(tmp_path / "state", "broker")
    first.release()
    first.release()
    StateLock.acquire(tmp_path / "state", "agent").release()
    broker.release()


def agent_config(root: Path) -> Path:
    """A config whose checks pass, dialling a port where no broker listens (it redials)."""
    pki = FederationCA.init(root / "pki", "fed")
    cert, key = pki.issue(Role.SUPPLIER, "site-a")
    (root / "rows.csv").write_text("age\n40\n")
    config = {
        "name": "site-a",
        "broker": "127.0.0.1:9",
        "tls": {"ca": str(pki.directory / "ca.pem"), "cert": str(cert), "key": str(key)},
        "state_dir": str(root / "state"),
        "sources": {"rows": {"kind": "file", "path": str(root / "rows.csv")}},
        "reconnect": {"initial_s": 0.1, "max_s": 0.2},
    }
    path = root / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_second_agent_on_the_same_state_dir_exits_2_naming_the_first(tmp_path: Path) -> None:
    config = agent_config(tmp_path)
    command = [sys.executable, "-m", "supplier_agent.cli", "run", "--config", str(config)]
    first = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        lock_file = tmp_path / "state" / "agent.lock"
        deadline = time.monotonic() + 60
        while not (lock_file.is_file() and lock_file.read_text().strip()):
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.1)
        second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert f"is in use by another agent (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr and "taking tasks" not in second.stderr
        assert first.poll() is None
    finally:
        os.kill(first.pid, signal.SIGTERM)
        first.wait(timeout=60)
    StateLock.acquire(tmp_path / "state", "agent").release()
