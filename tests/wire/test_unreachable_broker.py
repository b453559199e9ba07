"""A client command pointed at the wrong address says what is wrong and what to check, in one
line: before, it read "broker answered UNAVAILABLE: failed to connect to all addresses; ...",
and the broker's plaintext health port also printed gRPC's own handshake log lines."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fedsynth.security.principals import Role
from tests.wire.broker_harness import BrokerProcess, connection_args, free_port

BIN = Path(sys.executable).parent


def consumer_list(broker: BrokerProcess, address: str) -> subprocess.CompletedProcess[str]:
    """`fedsynth-consumer list` against `address`, with the user's gRPC verbosity unset."""
    args = connection_args(replace(broker, address=address), Role.CONSUMER, "alice")
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    return subprocess.run(
        [str(BIN / "fedsynth-consumer"), *args, "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("target", ["nobody listens", "plaintext health port"])
def test_a_wrong_address_is_explained_in_one_line(broker: BrokerProcess, target: str) -> None:
    address = f"127.0.0.1:{free_port()}" if target == "nobody listens" else broker.health_address
    done = consumer_list(broker, address)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    if target == "nobody listens":
        assert line == (
            f"error: cannot reach the broker at {address} (connection refused): check that it "
            "is running and that this is its mTLS address (its config's listen:)"
        )
    else:
        assert line.startswith(f"error: the broker at {address} did not complete a TLS handshake")
        assert "health port" in line
