"""SQL sources are checked like the rest of the agent's config: a relative SQLite file is taken
from the config's folder (not the directory a service manager starts the agent in), a database
the agent cannot open stops it at start-up naming the source, no database file is ever created,
and a dialect that is not installed is named with what to install."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role
from supplier_agent.cli import app
from supplier_agent.config import AgentConfig, AgentConfigError, SqlSource
from supplier_agent.sources import SourceError, check_sql, read_source


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FederationCA:
    ca = FederationCA.init(tmp_path_factory.mktemp("pki"), "fed")
    ca.issue(Role.SUPPLIER, "site-a")
    return ca


def write_config(root: Path, pki: FederationCA, sources: dict[str, dict[str, str]]) -> Path:
    """An agent config in `root/conf` with complete TLS files and `sources`."""
    cert, key = pki.paths_for(Role.SUPPLIER, "site-a")
    folder = root / "conf"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    config = {
        "name": "site-a",
        "broker": "127.0.0.1:7443",
        "tls": {"ca": str(pki.directory / "ca.pem"), "cert": str(cert), "key": str(key)},
        "state_dir": "state",
        "sources": sources,
    }
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def make_db(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE visits (age INTEGER)")
        db.execute("INSERT INTO visits VALUES (40)")


def sql(url: str) -> dict[str, str]:
    return {"kind": "sql", "url": url, "query": "SELECT age FROM visits"}


def test_a_relative_sqlite_url_is_taken_from_the_config_folder_wherever_the_agent_starts(
    tmp_path: Path, pki: FederationCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, pki, {"hb": sql("sqlite:///data/hb.db")})
    make_db(tmp_path / "conf" / "data" / "hb.db")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = AgentConfig.load(path)
    database = tmp_path / "conf" / "data" / "hb.db"
    source = config.source("hb")
    assert source.url == f"sqlite:///{database}"
    assert source.location() == f"sql:sqlite:///{database} SELECT age FROM visits"
    config.check_deployment()
    assert read_source(source).to_dict("list") == {"age": ["40"]}
    assert list(elsewhere.iterdir()) == []


def test_a_missing_sqlite_file_stops_the_agent_and_is_never_created(
    tmp_path: Path, pki: FederationCA
) -> None:
    path = write_config(tmp_path, pki, {"hb": sql("sqlite:///data/hb.db")})
    database = tmp_path / "conf" / "data" / "hb.db"
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert f"sources.hb.url: SQL source sqlite:///{database}: no database file" in result.output
    with pytest.raises(SourceError, match="no database file"):
        read_source(AgentConfig.load(path).source("hb"))
    assert not database.exists()


def test_a_database_that_refuses_the_connection_stops_the_agent_naming_the_source(
    tmp_path: Path, pki: FederationCA
) -> None:
    sources = {"clinic": sql("postgresql+psycopg://reader@127.0.0.1:9/clinic")}
    with pytest.raises(AgentConfigError) as refused:
        AgentConfig.load(write_config(tmp_path, pki, sources)).check_deployment()
    text = str(refused.value)
    assert "sources.clinic.url: SQL source postgresql+psycopg://reader@127.0.0.1:9/clinic" in text
    assert "cannot connect" in text and "password_env" in text


def test_a_password_variable_that_is_not_set_stops_the_agent(
    tmp_path: Path, pki: FederationCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLINIC_PW", raising=False)
    source = {**sql("postgresql+psycopg://reader@127.0.0.1:9/clinic"), "password_env": "CLINIC_PW"}
    with pytest.raises(AgentConfigError, match=r"sources\.clinic\.url: .*CLINIC_PW is not set"):
        AgentConfig.load(write_config(tmp_path, pki, {"clinic": source})).check_deployment()


def test_a_url_that_is_not_one_is_refused_when_the_config_loads(
    tmp_path: Path, pki: FederationCA
) -> None:
    with pytest.raises(AgentConfigError, match=r"sources\.hb.*url.*not a SQLAlchemy URL"):
        AgentConfig.load(write_config(tmp_path, pki, {"hb": sql("data/hb.db")}))


def test_a_dialect_that_is_not_installed_is_a_source_error_naming_what_to_install() -> None:
    with pytest.raises(SourceError) as refused:
        check_sql(SqlSource(url="madeupdb://reader@host/db", query="SELECT 1"))
    assert "no dialect 'madeupdb' installed" in str(refused.value)
    assert "dialect package for 'madeupdb'" in str(refused.value)


def test_duckdb_without_its_sqlalchemy_dialect_names_duckdb_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "duckdb_engine", None)  # as where it is not installed
    (tmp_path / "hb.duckdb").write_bytes(b"")
    source = SqlSource(url=f"duckdb:///{tmp_path / 'hb.duckdb'}", query="SELECT 1")
    with pytest.raises(SourceError, match=r"no dialect 'duckdb'.*pip install duckdb-engine"):
        read_source(source)


def test_a_driver_that_is_not_installed_names_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymysql", None)  # as where it is not installed
    source = SqlSource(url="mysql+pymysql://reader@host/db", query="SELECT 1")
    with pytest.raises(
        SourceError, match=r"needs the Python module 'pymysql'.*pip install pymysql"
    ):
        check_sql(source)
