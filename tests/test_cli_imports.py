"""Light commands stay light: the CLI modules, their --help (the supplier agent's too), the broker
probe and the PKI, operator and consumer paths load no torch, scikit-learn, scipy or matplotlib
(each costs every call seconds and hundreds of MB; the container health check has 3 s). Each
check is a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "opacus", "sklearn", "scipy", "matplotlib")
PROBE = f"""
import importlib, json, sys
heavy = lambda: sorted(m for m in {HEAVY!r} if m in sys.modules)
module = importlib.import_module(sys.argv[1])
on_import = heavy()
sys.argv = ["cli", *sys.argv[2:]]
try:
    getattr(module, "main", module.app)()
except SystemExit:
    pass
print("\\nLOADED " + json.dumps({{"import": on_import, "run": heavy()}}))
"""


def loaded(module: str, *args: str) -> dict[str, list[str]]:
    """Heavy modules in sys.modules of a fresh process after importing `module`, then after
    running its console entry point (`main`, else `app`) with `args`."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert last.startswith("LOADED "), done.stdout + done.stderr
    return json.loads(last.removeprefix("LOADED "))


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("fedsynth.cli", ["--help"]),
        ("fedsynth.cli", ["pki", "--help"]),
        ("fedsynth.cli", ["operator", "--help"]),
        ("fedsynth.cli", ["operator", "submit", "--help"]),
        ("fedsynth.cli", ["synth", "fit", "--help"]),
        ("fedsynth.cli", ["audit", "--help"]),
        ("fedsynth.cli", ["privacy", "--help"]),
        ("fedsynth.operator.cli", ["--help"]),
        ("fedsynth.security.cli", ["--help"]),
        ("consumer_client.cli", ["--help"]),
        ("consumer_client.cli", ["pull", "--help"]),
        ("supplier_agent.cli", ["--help"]),
        ("supplier_agent.cli", ["run", "--help"]),
        ("supplier_agent.cli", ["budget", "--help"]),
        ("broker.cli", ["--help"]),
        ("broker.cli", ["probe", "--help"]),
        ("broker.cli", ["probe", "127.0.0.1:1", "--timeout", "0.5"]),
    ],
)
def test_a_light_command_loads_no_heavy_library(module: str, args: list[str]) -> None:
    assert loaded(module, *args) == {"import": [], "run": []}


def test_pki_operator_and_consumer_paths_load_no_heavy_library(tmp_path: Path) -> None:
    """Issue certificates, then list jobs and releases on a port where no broker answers."""
    assert loaded(
        "fedsynth.cli", "pki", "init", "--federation", "fed", "--dir", str(tmp_path / "pki")
    ) == {"import": [], "run": []}
    ca = FederationCA(tmp_path / "pki")
    nobody = ["--broker", "127.0.0.1:1", "--ca", str(tmp_path / "pki" / "ca.pem")]
    for role, module, command in (
        (Role.OPERATOR, "fedsynth.operator.cli", "list"),
        (Role.CONSUMER, "consumer_client.cli", "list"),
    ):
        cert, key = ca.issue(role, "someone")
        args = [*nobody, "--cert", str(cert), "--key", str(key), command]
        assert loaded(module, *args) == {"import": [], "run": []}, module


def test_the_model_registry_names_every_model_before_importing_any() -> None:
    """Job specs and `synth fit --help` list and check model names; only a lookup imports."""
    code = (
        "import sys; from fedsynth.synth import REGISTRY; names = sorted(REGISTRY); "
        "before = 'scipy' in sys.modules or 'torch' in sys.modules; "
        "print(names, before, all(REGISTRY[n].name == n for n in names), 'torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    names = "['cart', 'copula', 'dp-copula', 'dp-marginal', 'mvn', 'tvae']"
    assert done.stdout.strip() == f"{names} False True True", done.stderr
