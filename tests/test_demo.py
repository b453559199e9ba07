"""`make demo`'s flow on small data: a release pulled and verified, nothing left running."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from demo import run as demo_run
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
    assert f"dataset:      {releases[0]}\n" in done.stdout
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


def test_the_summary_prints_long_paths_whole_and_no_dp_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(demo_run, "console", Console(file=out, width=80))
    folder = tmp_path / ("a-work-folder-deep-enough-to-outgrow-an-80-column-console" * 2)
    release = {
        "release": "rel-1",
        "rows": 3000,
        "report": {"verdict": "pass"},
        "attestation": {"privacy_spent": None},
        "dataset": folder / "rel-1.parquet",
        "report_path": folder / "rel-1.audit.json",
        "attestation_path": folder / "rel-1.attestation.json",
    }
    demo_run.summarize(release, "federated", 12.0)
    printed = out.getvalue()
    for key in ("dataset", "report_path", "attestation_path"):
        assert f"{release[key]}\n" in printed
    assert "none (no DP)" in printed and '"no DP"' not in printed
