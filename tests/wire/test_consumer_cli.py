"""`fedsynth-consumer` against a real broker: the audit report of a release, a pull that will not
replace a file unless forced, and a broker refusal that exits as `fedsynth operator` does."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from broker.config import BrokerConfig
from broker.releases import Published, publish
from broker.state import BrokerState
from consumer_client import Client, ReleaseNotFound
from consumer_client import cli as consumer_cli
from fedsynth.operator.cli import app as operator_app
from fedsynth.security.principals import Role
from fedsynth.wire.transfer import resume_path
from tests.wire.broker_harness import REPO, BrokerProcess, released, submit_job

runner = CliRunner()
REPORT = {"verdict": "pass", "fidelity": {"overall": 0.91}}


@pytest.fixture(scope="module")
def release(broker: BrokerProcess) -> Iterator[Published]:
    state = BrokerState.open(BrokerConfig.load(broker.config_path))
    buffer = io.BytesIO()
    pd.DataFrame({"age": [1, 2, 3]}).to_parquet(buffer, index=False)
    try:
        yield publish(
            state,
            job_id=submit_job(broker, "consumer-cli"),
            name="consumer-cli",
            dataset=buffer.getvalue(),
            audit_report_json=json.dumps(REPORT).encode(),
            audit_html=b"<html/>",
            job_spec_hash="d" * 64,
            topology="local",
            synthesizer="cart",
            privacy_spent=None,
        )
    finally:
        state.close()


def identity(broker: BrokerProcess, role: Role, name: str) -> list[str]:
    ids = broker.identity(role, name)
    return ["--broker", broker.address, "--ca", str(ids["ca"]), "--cert", str(ids["cert"]),
            "--key", str(ids["key"])]  # fmt: skip


def test_report_writes_the_attested_audit_report(
    broker: BrokerProcess, release: Published, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    args = [*identity(broker, Role.CONSUMER, "alice"), "report", release.release_id, "-o", str(out)]
    result = runner.invoke(consumer_cli.app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == REPORT


def test_report_writes_the_attested_html_page_and_refuses_one_altered_on_the_broker(
    broker: BrokerProcess, release: Published, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    args = [*identity(broker, Role.CONSUMER, "alice"), "report", release.release_id, "-o", str(out)]
    assert runner.invoke(consumer_cli.app, args).exit_code == 0
    page = out.read_bytes()
    assert hashlib.sha256(page).hexdigest() == release.attestation["audit_html"]["sha256"]
    stored = broker.root / "state" / "artifacts" / "sha256"
    path = next(stored.rglob(release.attestation["audit_html"]["sha256"]))
    path.chmod(0o600)
    path.write_bytes(page + b"<script>alert(1)</script>")
    altered = tmp_path / "altered.html"
    refused = runner.invoke(consumer_cli.app, [*args[:-1], str(altered)])
    assert refused.exit_code != 0 and not altered.exists()


def test_a_second_pull_to_the_same_file_needs_force(
    broker: BrokerProcess, release: Published, tmp_path: Path
) -> None:
    out = tmp_path / "synthetic.parquet"
    args = [*identity(broker, Role.CONSUMER, "alice"), "pull", release.release_id, "-o", str(out)]
    first = runner.invoke(consumer_cli.app, args)
    assert first.exit_code == 0 and f"{release.release_id} " in first.output, first.output
    out.write_bytes(b"edited by the analyst")
    refused = runner.invoke(consumer_cli.app, args)
    assert refused.exit_code == 2 and "add --force to replace it" in refused.output
    assert out.read_bytes() == b"edited by the analyst"
    forced = runner.invoke(consumer_cli.app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert pd.read_parquet(out)["age"].tolist() == [1, 2, 3]


def test_a_csv_pull_says_on_stderr_that_it_converts_after_the_download(
    broker: BrokerProcess, release: Published, tmp_path: Path
) -> None:
    out = tmp_path / "synthetic.csv"
    args = [*identity(broker, Role.CONSUMER, "alice"), "pull", release.release_id, "-o", str(out)]
    pulled = runner.invoke(consumer_cli.app, args)
    assert pulled.exit_code == 0, pulled.output
    assert pulled.stderr == f"converting to CSV: {out}\n"
    assert pulled.stdout.endswith(f"verified and wrote {out}\n")
    assert "converting" not in pulled.stdout
    assert pd.read_csv(out)["age"].tolist() == [1, 2, 3]


def test_an_unknown_release_exits_as_an_unknown_job_does_for_the_operator(
    broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fedsynth-consumer", *identity(broker, Role.CONSUMER, "alice"), "show", "rel-nope"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as consumer:
        consumer_cli.main()
    assert "NOT_FOUND" in capsys.readouterr().err
    operator = runner.invoke(
        operator_app, [*identity(broker, Role.OPERATOR, "ops"), "status", "job-nope"]
    )
    assert "NOT_FOUND" in operator.output
    assert consumer.value.code == operator.exit_code == 2


def test_the_python_api_raises_release_not_found_for_an_unknown_release(
    broker: BrokerProcess,
) -> None:
    ids = broker.identity(Role.CONSUMER, "alice")
    with Client(broker.address, **ids) as client, pytest.raises(ReleaseNotFound) as missing:
        client.pull("rel-nope")
    assert "release 'rel-nope': the broker answered NOT_FOUND" in str(missing.value)


def test_show_columns_prints_the_attested_data_dictionary(
    broker: BrokerProcess, state: BrokerState
) -> None:
    schema = {
        "name": "patients",
        "columns": [
            {
                "name": "age",
                "kind": "numerical",
                "dtype": "int",
                "min": 0,
                "max": 120,
                "unit": "years",
                "description": "Age in whole years at admission.",
            },
            {"name": "sex", "kind": "categorical", "domain": ["F", "M"], "nullable": False},
        ],
    }
    release = released(state, submit_job(broker, "dictionary"), "dictionary", b"rows", schema)
    args = [*identity(broker, Role.CONSUMER, "alice"), "show", release.release_id, "--columns"]
    shown = CliRunner(env={"COLUMNS": "200"}).invoke(consumer_cli.app, args)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert any(
        "age" in line and "0 .. 120" in line and "years" in line and "Age in whole" in line
        for line in lines
    )
    assert any("sex" in line and "F, M" in line and "False" in line for line in lines)
    bare = released(state, submit_job(broker, "no-dictionary"), "bare", b"rows")
    missing = runner.invoke(
        consumer_cli.app,
        [*identity(broker, Role.CONSUMER, "alice"), "show", bare.release_id, "--columns"],
    )
    assert missing.exit_code == 2 and "published without an attested schema" in missing.output


def test_an_unknown_release_pull_points_the_cli_user_at_the_list_command(
    broker: BrokerProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    out = str(tmp_path / "synthetic.parquet")
    argv = [*identity(broker, Role.CONSUMER, "alice"), "pull", "rel-nope", "-o", out]
    monkeypatch.setattr(sys, "argv", ["fedsynth-consumer", *argv])
    with pytest.raises(SystemExit) as exited:
        consumer_cli.main()
    printed = capsys.readouterr()
    assert exited.value.code == 2
    assert "release 'rel-nope': the broker answered NOT_FOUND" in printed.err
    assert "run `fedsynth-consumer list` to see the releases it serves" in printed.err
    assert "Client.list()" not in printed.err
    assert "0/? bytes" not in printed.out


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_pull_out_that_is_a_directory_or_not_parquet_or_csv_is_refused_before_force(
    broker: BrokerProcess, release: Published, tmp_path: Path, force: list[str]
) -> None:
    pull = [*identity(broker, Role.CONSUMER, "alice"), "pull", release.release_id, "-o"]
    folder = tmp_path / "downloads"
    folder.mkdir()
    as_folder = runner.invoke(consumer_cli.app, [*pull, str(folder), *force])
    assert as_folder.exit_code == 2
    assert f"--out {folder} is a directory; name a file in it, e.g. " in as_folder.output
    assert "--force" not in as_folder.output and "must end in" not in as_folder.output
    text = tmp_path / "synthetic.txt"
    text.write_text("kept\n")
    as_text = runner.invoke(consumer_cli.app, [*pull, str(text), *force])
    assert as_text.exit_code == 2
    assert f"--out {text}: name it *.parquet (as served) or *.csv" in as_text.output
    assert "--force" not in as_text.output and text.read_text() == "kept\n"


def test_show_columns_prints_bracketed_units_and_values_as_attested(
    broker: BrokerProcess, state: BrokerState
) -> None:
    schema = {
        "name": "patients",
        "columns": [
            {"name": "bmi", "kind": "numerical", "min": 10, "max": 60, "unit": "[kg/m2]"},
            {"name": "risk", "kind": "categorical", "domain": ["[low]", "[high]"]},
        ],
    }
    release = released(state, submit_job(broker, "brackets"), "brackets", b"rows", schema)
    args = [*identity(broker, Role.CONSUMER, "alice"), "show", release.release_id, "--columns"]
    shown = CliRunner(env={"COLUMNS": "200"}).invoke(consumer_cli.app, args)
    assert shown.exit_code == 0, shown.output
    assert "[kg/m2]" in shown.output and "[low], [high]" in shown.output


@pytest.mark.parametrize("suffix", [".html", ".json"])
def test_a_report_out_that_is_a_folder_or_under_a_file_is_refused_in_one_line(
    broker: BrokerProcess, release: Published, tmp_path: Path, suffix: str
) -> None:
    folder = tmp_path / f"report{suffix}"
    folder.mkdir()
    afile = tmp_path / "notes.txt"
    afile.write_text("kept\n")
    report = [*identity(broker, Role.CONSUMER, "alice"), "report", release.release_id, "-o"]
    for out, reason in [(folder, "is a folder"), (afile / f"report{suffix}", "is a file")]:
        refused = runner.invoke(consumer_cli.app, [*report, str(out)])
        assert refused.exit_code == 2, refused.output
        assert refused.output.startswith(f"error: --out {out}: ") and reason in refused.output
        assert refused.output.count("\n") == 1 and ".tmp" not in refused.output
    assert afile.read_text() == "kept\n" and list(folder.iterdir()) == []


CTRL_C_ABLE = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)
"""Runs the module named by the first argument with Ctrl-C raising KeyboardInterrupt, as at a
terminal: a test run started in the background by a non-interactive shell (make under nohup, a
CI runner) ignores SIGINT, and a child process inherits that."""


def interrupted_pull(
    broker: BrokerProcess, release_id: str, out: Path, partial: Path
) -> subprocess.CompletedProcess[str] | None:
    """A CLI pull of `release_id` to `out`, sent Ctrl-C once its partial file exists; None when
    the pull ended before the signal reached it (a busy machine can let it finish first)."""
    pulling = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_ABLE, "consumer_client.cli",
         *identity(broker, Role.CONSUMER, "alice"), "pull", release_id, "-o", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    while not partial.exists() and pulling.poll() is None:
        time.sleep(0.005)
    pulling.send_signal(signal.SIGINT)
    stdout, stderr = pulling.communicate(timeout=60)
    if pulling.returncode == 0:
        return None
    return subprocess.CompletedProcess(pulling.args, pulling.returncode, stdout, stderr)


def test_ctrl_c_during_a_pull_keeps_the_bytes_and_exits_1_with_the_resume_hint(
    broker: BrokerProcess, state: BrokerState, tmp_path: Path
) -> None:
    rng = np.random.default_rng(2)
    buffer = io.BytesIO()
    pd.DataFrame({"noise": [rng.bytes(1024) for _ in range(64_000)]}).to_parquet(buffer)
    release = released(state, submit_job(broker, "ctrl-c"), "ctrl-c", buffer.getvalue())
    for attempt in range(5):
        out = tmp_path / f"big-{attempt}.parquet"
        partial = resume_path(out, release.attestation["dataset"]["sha256"])
        interrupted = interrupted_pull(broker, release.release_id, out, partial)
        if interrupted is not None:
            break
    assert interrupted is not None, "every pull ended before Ctrl-C reached it"
    err = interrupted.stderr
    assert interrupted.returncode == 1, err
    assert "interrupted: the bytes received are kept" in err
    assert "run the same pull again to resume" in err and "Traceback" not in err
    assert not out.exists() and partial.exists()
