"""`fedsynth-supplier run` checks its identity, linkage secret and sources at start-up, so a
site learns of a wrong file or name from one line naming the config field, not from a traceback
or from a broker that refuses it forever."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fedsynth.privacy.accountant import approximate_cost
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.privacy.spec import BudgetCap
from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role
from supplier_agent.cli import app
from supplier_agent.config import AgentConfig, AgentConfigError
from supplier_agent.dp_tasks import LEDGER_FILE


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FederationCA:
    ca = FederationCA.init(tmp_path_factory.mktemp("pki"), "fed")
    for name in ("site-a", "site-b"):
        ca.issue(Role.SUPPLIER, name)
    ca.issue(Role.OPERATOR, "ops")
    return ca


def write_config(root: Path, pki: FederationCA, *, name: str = "site-a", **changes: object) -> Path:
    """An agent config for supplier `name` whose files all exist; `changes` replace fields."""
    cert, key = pki.paths_for(Role.SUPPLIER, "site-a")
    (root / "rows.csv").write_text("age\n40\n")
    secret = root / "linkage.key"
    secret.write_text("s" * 32)
    secret.chmod(0o600)
    config = {
        "name": name,
        "broker": "127.0.0.1:7443",
        "tls": {
            "ca": str(pki.directory / "ca.pem"),
            "cert": str(cert),
            "key": str(key),
            "crl": str(pki.crl_path),
        },
        "state_dir": str(root / "state"),
        "sources": {"rows": {"kind": "file", "path": str(root / "rows.csv")}},
        "linkage_secret": str(secret),
        **changes,
    }
    path = root / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def refusal(path: Path) -> str:
    with pytest.raises(AgentConfigError) as refused:
        AgentConfig.load(path).check_deployment()
    return str(refused.value)


def test_a_complete_deployment_starts_without_warnings(tmp_path: Path, pki: FederationCA) -> None:
    assert AgentConfig.load(write_config(tmp_path, pki)).check_deployment() == []


def test_an_agent_without_a_revocation_list_is_warned(tmp_path: Path, pki: FederationCA) -> None:
    config = AgentConfig.load(write_config(tmp_path, pki))
    bare = config.model_copy(update={"tls": config.tls.model_copy(update={"crl": None})})
    (warning,) = bare.check_deployment()
    assert warning.startswith("tls.crl is not set") and "crl.pem" in warning


def test_run_refuses_a_key_file_as_tls_cert_in_one_line_naming_the_field(
    tmp_path: Path, pki: FederationCA
) -> None:
    _, key = pki.paths_for(Role.SUPPLIER, "site-a")
    tls = {"ca": str(pki.directory / "ca.pem"), "cert": str(key), "key": str(key)}
    result = CliRunner().invoke(app, ["run", "--config", str(write_config(tmp_path, pki, tls=tls))])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert f"tls.cert {key}: not a PEM certificate" in result.output
    assert "--cert" not in result.output


def test_a_key_that_does_not_belong_to_the_certificate_names_tls_key(
    tmp_path: Path, pki: FederationCA
) -> None:
    cert, _ = pki.paths_for(Role.SUPPLIER, "site-a")
    _, other_key = pki.paths_for(Role.SUPPLIER, "site-b")
    tls = {"ca": str(pki.directory / "ca.pem"), "cert": str(cert), "key": str(other_key)}
    text = refusal(write_config(tmp_path, pki, tls=tls))
    assert f"tls.key {other_key} does not belong to tls.cert {cert}" in text


def test_a_name_other_than_the_certificates_stops_the_agent_naming_both(
    tmp_path: Path, pki: FederationCA
) -> None:
    text = refusal(write_config(tmp_path, pki, name="site-b"))
    assert "name 'site-b'" in text and "spiffe://fed/supplier/site-a" in text
    assert "set name: site-a" in text and "--name site-b" in text


def test_a_certificate_of_another_role_is_refused_as_not_a_suppliers(
    tmp_path: Path, pki: FederationCA
) -> None:
    cert, key = pki.paths_for(Role.OPERATOR, "ops")
    tls = {"ca": str(pki.directory / "ca.pem"), "cert": str(cert), "key": str(key)}
    text = refusal(write_config(tmp_path, pki, tls=tls))
    assert "tls.cert" in text and "operator certificate" in text and "not a supplier's" in text


def test_a_linkage_secret_that_is_missing_or_unsafe_is_refused_at_start(
    tmp_path: Path, pki: FederationCA
) -> None:
    missing = tmp_path / "absent.key"
    text = refusal(write_config(tmp_path, pki, linkage_secret=str(missing)))
    assert f"linkage_secret {missing}: no file there" in text
    config = write_config(tmp_path, pki)
    (tmp_path / "linkage.key").chmod(0o644)
    assert "linkage_secret" in refusal(config) and "chmod 600" in refusal(config)


def test_a_file_source_not_there_yet_is_a_warning_naming_its_field(
    tmp_path: Path, pki: FederationCA
) -> None:
    later = tmp_path / "mnt" / "rows.csv"
    sources = {"rows": {"kind": "file", "path": str(later)}}
    warnings = AgentConfig.load(write_config(tmp_path, pki, sources=sources)).check_deployment()
    assert len(warnings) == 1 and warnings[0].startswith(f"sources.rows.path {later}:")


def test_a_damaged_privacy_ledger_stops_the_agent_at_start_with_the_reason(
    tmp_path: Path, pki: FederationCA
) -> None:
    """A truncated ledger was recreated empty: the site's sources could spend their caps
    again."""
    ledger = PrivacyLedger(
        tmp_path / "state" / LEDGER_FILE, supplier="site-a", cap=BudgetCap(epsilon=1, delta=1e-5)
    )
    ledger.charge("rows", "job-1", approximate_cost(0.9))
    ledger.path.write_bytes(b"")
    result = CliRunner().invoke(app, ["run", "--config", str(write_config(tmp_path, pki))])
    assert result.exit_code == 2, result.output
    assert "holds 0 charges where its head" in result.output
    assert "Restore the ledger from backup" in result.output and "Traceback" not in result.output
