"""The supplier agent's own config, sources, egress gate and task journal."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pandas as pd
import pytest

from fedsynth.jobs import Topology
from supplier_agent.config import AgentConfig, AgentConfigError, ArtifactKind, SqlSource
from supplier_agent.egress import EgressLog, EgressRefused, check_egress
from supplier_agent.journal import TaskJournal
from supplier_agent.sources import SourceError, read_source

CONFIG = """
name: hospital-a
broker: 127.0.0.1:7443
tls: {ca: pki/ca.pem, cert: pki/hospital-a.pem, key: pki/hospital-a.key}
state_dir: state
sources:
  admissions: {kind: file, path: data/admissions.csv}
  registry: {kind: sql, url: "sqlite:///db.sqlite", query: "SELECT * FROM patients"}
egress:
  allow: [statistics]
  topologies: [federated]
"""


def test_config_loads_with_paths_relative_to_its_file(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text(CONFIG)
    config = AgentConfig.load(tmp_path / "agent.yaml")
    assert config.tls.cert == tmp_path / "pki" / "hospital-a.pem"
    assert config.source("admissions").path == tmp_path / "data" / "admissions.csv"
    assert config.egress.allow == {ArtifactKind.STATISTICS}
    with pytest.raises(AgentConfigError, match=r"no source 'x'.*\['admissions', 'registry'\]"):
        config.source("x")


def test_the_revocation_list_survives_loading_relative_to_the_config(tmp_path: Path) -> None:
    with_crl = CONFIG.replace(
        "key: pki/hospital-a.key}", "key: pki/hospital-a.key, crl: pki/crl.pem}"
    )
    (tmp_path / "agent.yaml").write_text(with_crl)
    config = AgentConfig.load(tmp_path / "agent.yaml")
    assert config.tls.crl == tmp_path / "pki" / "crl.pem"


def test_config_problems_are_all_listed(tmp_path: Path) -> None:
    bad = CONFIG.replace("127.0.0.1:7443", "nowhere").replace("[statistics]", "[secrets]")
    (tmp_path / "agent.yaml").write_text(bad)
    with pytest.raises(AgentConfigError) as err:
        AgentConfig.load(tmp_path / "agent.yaml")
    text = str(err.value)
    assert "agent.yaml" in text and "egress.allow" in text and "host:port" in text


def test_sql_source_reads_like_the_same_rows_in_a_file(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "pid": ["a1", "a2", "a3"],
            "age": pd.array([34, None, 7], dtype="Int64"),
            "w": [61.5, 70.25, None],
        }
    )
    rows.to_csv(tmp_path / "p.csv", index=False)
    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        rows.to_sql("patients", db, index=False)
    (tmp_path / "agent.yaml").write_text(CONFIG.replace("admissions.csv", "../p.csv"))
    (tmp_path / "data").mkdir()
    config = AgentConfig.load(tmp_path / "agent.yaml")
    from_sql = read_source(
        SqlSource(url=f"sqlite:///{tmp_path / 'db.sqlite'}", query="SELECT * FROM patients")
    )
    from_file = read_source(config.source("admissions"))
    assert from_sql.to_dict("list") == from_file.to_dict("list")
    assert from_sql["age"].tolist() == ["34", None, "7"]


def test_sql_errors_name_the_source_without_the_password(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", "s3cret")
    sqlite3.connect(tmp_path / "empty.sqlite").close()
    source = SqlSource(url=f"sqlite:///{tmp_path / 'empty.sqlite'}", query="SELECT * FROM missing")
    with pytest.raises(SourceError, match="no such table"):
        read_source(source)
    pg = SqlSource(
        url="postgresql+psycopg://reader@db/clinic", query="SELECT 1", password_env="DB_PASSWORD"
    )
    assert "s3cret" in pg.resolved_url()
    monkeypatch.delenv("DB_PASSWORD")
    with pytest.raises(AgentConfigError, match="DB_PASSWORD is not set"):
        pg.resolved_url()


def test_egress_gate_refuses_what_the_site_does_not_allow(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text(CONFIG)
    policy = AgentConfig.load(tmp_path / "agent.yaml").egress
    check_egress(policy, Topology.FEDERATED, ArtifactKind.STATISTICS)
    with pytest.raises(EgressRefused, match=r"does not let 'raw' data leave.*allows: statistics"):
        check_egress(policy, Topology.FEDERATED, ArtifactKind.RAW)
    with pytest.raises(EgressRefused, match="does not take part in 'central' jobs"):
        check_egress(policy, Topology.CENTRAL, ArtifactKind.STATISTICS)


def test_egress_log_keeps_every_entry_from_concurrent_senders(tmp_path: Path) -> None:
    log = EgressLog(tmp_path / "egress.jsonl")

    def send(i: int) -> None:
        log.record(
            job="j",
            task=f"t{i}",
            artifact=ArtifactKind.STATISTICS,
            sha256="ab" * 32,
            size=i,
            to="127.0.0.1:7443",
        )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e.size for e in EgressLog(tmp_path / "egress.jsonl").entries()) == list(range(20))


def test_journal_returns_the_first_result_across_restarts(tmp_path: Path) -> None:
    journal = TaskJournal(tmp_path / "journal.db")
    assert journal.result("t1") is None
    assert journal.record("t1", "j1", True, b"first") == (True, b"first")
    assert journal.record("t1", "j1", False, b"second") == (True, b"first")
    journal.close()
    assert TaskJournal(tmp_path / "journal.db").result("t1") == (True, b"first")


def test_a_misspelt_key_in_a_source_is_named_with_the_closest_known_one(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "name: a\nbroker: 127.0.0.1:7443\nstate_dir: s\ntls: {ca: a, cert: b, key: c}\n"
        "sources: {visits: {kind: file, path: v.csv, delimeter: ';'}}\n"
    )
    with pytest.raises(AgentConfigError) as err:
        AgentConfig.load(path)
    assert "sources.visits.delimeter: unknown key 'delimeter'; did you mean 'delimiter'?" in str(
        err.value
    )
