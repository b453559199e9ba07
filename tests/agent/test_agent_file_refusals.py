"""A file source the agent cannot read is refused as `fedsynth validate` refuses it, naming the
agent config's field to fix (`sources.NAME.delimiter`, `sources.NAME.encoding`), not a
command-line option the site's staff cannot give a running agent."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from supplier_agent.config import AgentConfig
from supplier_agent.sources import SourceError, read_source

BODY = "mrn,first_name,age\n1,Ann,40\n2,José,51\n"


def load(tmp_path: Path, **options: str) -> AgentConfig:
    config = {
        "name": "site-a",
        "broker": "127.0.0.1:7443",
        "tls": {"ca": "ca.pem", "cert": "c.pem", "key": "c.key"},
        "state_dir": "state",
        "sources": {"hb": {"kind": "file", "path": "hb.csv", **options}},
    }
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
    return AgentConfig.load(tmp_path / "agent.yaml")


def test_a_wrong_delimiter_names_the_sources_delimiter_field(tmp_path: Path) -> None:
    (tmp_path / "hb.csv").write_text(BODY)
    with pytest.raises(SourceError) as refused:
        read_source(load(tmp_path, delimiter=";").source("hb"))
    assert str(refused.value) == (
        f"{tmp_path / 'hb.csv'}: the header is delimited by ',', not the declared ';'. Fix: "
        "declare the delimiter ',' (sources.hb.delimiter: ','), or leave sources.hb.delimiter "
        "out to have it sniffed"
    )


def test_latin1_bytes_name_the_line_offset_and_the_sources_encoding_field(tmp_path: Path) -> None:
    (tmp_path / "hb.csv").write_bytes(BODY.encode("latin-1"))
    with pytest.raises(SourceError) as refused:
        read_source(load(tmp_path).source("hb"))
    text = str(refused.value)
    assert "not valid utf-8 at line 3, byte offset 33 (0xe9)" in text
    assert "declare its real encoding (sources.hb.encoding)" in text and "--" not in text
    rows = read_source(load(tmp_path, encoding="latin-1").source("hb"))
    assert rows["first_name"].tolist() == ["Ann", "José"]


def test_an_unknown_encoding_names_the_sources_encoding_field(tmp_path: Path) -> None:
    (tmp_path / "hb.csv").write_text(BODY)
    with pytest.raises(SourceError, match=r"give sources\.hb\.encoding a Python codec name"):
        read_source(load(tmp_path, encoding="klingon").source("hb"))
