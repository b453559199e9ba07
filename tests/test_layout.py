"""The architecture's import rules: roles meet only in `fedsynth` and on the wire."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("broker", "supplier_agent", "consumer_client")


def imported_packages(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("package", ["fedsynth", *ROLES])
def test_packages_import_no_other_role(package: str) -> None:
    forbidden = set(ROLES) - {package}
    offenders = {
        file: sorted(names & forbidden)
        for file, names in imported_packages(ROOT / package).items()
        if names & forbidden
    }
    assert offenders == {}


def test_nothing_unpickles() -> None:
    offenders = []
    for package in ("fedsynth", *ROLES):
        for file, names in imported_packages(ROOT / package).items():
            if names & {"pickle", "cloudpickle", "dill", "joblib", "shelve"}:
                offenders.append(file)
    assert offenders == []
