"""An agent the broker refuses for who it is stops with the fix named, instead of redialling
forever: a revoked certificate, a name its certificate does not carry, a supplier not enrolled."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fedsynth.security.principals import Role
from supplier_agent.agent import AgentRefused, SupplierAgent
from supplier_agent.config import AgentConfig
from tests.wire.broker_harness import REPO, BrokerProcess, running_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(tmp_path_factory.mktemp("refused")) as process:
        yield process


def agent_config(broker: BrokerProcess, root: Path, name: str, cert_of: str) -> Path:
    identity = broker.identity(Role.SUPPLIER, cert_of)
    (root / "rows.csv").write_text("age\n40\n")
    config = {
        "name": name,
        "broker": broker.address,
        "tls": {
            "ca": str(identity["ca"]),
            "cert": str(identity["cert"]),
            "key": str(identity["key"]),
            "crl": str(broker.pki.crl_path),
        },
        "state_dir": str(root / "state"),
        "sources": {"rows": {"kind": "file", "path": str(root / "rows.csv")}},
        "egress": {"allow": ["statistics"], "topologies": ["federated"]},
        "reconnect": {"initial_s": 0.1, "max_s": 0.2},
    }
    path = root / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("name", "cert_of", "expected"),
    [
        ("hospital-b", "hospital-a", "cannot act as 'hospital-b'"),
        ("not-enrolled", "not-enrolled", "not-enrolled"),
    ],
)
def test_an_agent_refused_for_its_name_stops_and_says_what_to_check(
    broker: BrokerProcess, tmp_path: Path, name: str, cert_of: str, expected: str
) -> None:
    config = AgentConfig.load(agent_config(broker, tmp_path, name, cert_of))
    with pytest.raises(AgentRefused, match=expected) as refused:
        SupplierAgent(config).run()
    assert "PERMISSION_DENIED" in str(refused.value)
    assert "`name` in the agent config" in str(refused.value)


def test_an_agent_with_a_revoked_certificate_exits_2_naming_the_fix(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    path = agent_config(broker, tmp_path, "hospital-b", "hospital-b")
    broker.pki.revoke(role=Role.SUPPLIER, name="hospital-b")
    done = subprocess.run(
        [sys.executable, "-m", "supplier_agent.cli", "run", "--config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "UNAUTHENTICATED" in done.stderr and "fedsynth pki issue --replace" in done.stderr
    assert "Traceback" not in done.stderr
    assert "supplier 'hospital-b': taking tasks from broker 127.0.0.1:" in done.stderr
