"""`make demo`'s flow on small data: a release pulled and verified, nothing left running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from demo.run import CONSTRAINTS
from fedsynth.expressions import parse

ROOT = Path(__file__).resolve().parent.parent


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


def run_demo(work: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "demo" / "run.py"),
            "--topology",
            "federated",
            "--work",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_demo_releases_a_verified_dataset_twice_and_leaves_nothing_running(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    for _ in range(2):
        done = run_demo(work)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "demo finished: release pulled and verified" in done.stdout
        assert "audit verdict" in done.stdout and "pass" in done.stdout
        assert processes_mentioning(str(work)) == []
    releases = list((work / "release").glob("*.parquet"))
    assert (
        len(releases) == 1
        and (work / "release").joinpath(releases[0].with_suffix(".attestation.json").name).exists()
    )
    released = pd.read_parquet(releases[0])
    for derived in CONSTRAINTS:
        column = released[derived["column"]]
        expected = parse(derived["expression"]).evaluate(released)
        differ = (column != expected).fillna(False) | (column.isna() != expected.isna())
        assert not differ.any(), f"{derived}: {int(differ.sum())} released rows break it"
