"""A finished task's output, saved for a restarted agent, keeps the hash it will declare."""

from __future__ import annotations

import json
from pathlib import Path

from supplier_agent.config import ArtifactKind
from supplier_agent.outgoing import OutFile, Outgoing
from supplier_agent.tasks import load_outgoing, save_outgoing


def test_saved_output_keeps_the_hash_its_verdict_signed(tmp_path: Path) -> None:
    out = OutFile("synthetic.parquet", ArtifactKind.SYNTHETIC, tmp_path / "s.parquet", "ab" * 32)
    save_outgoing(tmp_path / "outgoing.json", Outgoing({"rows": 3}, (out,)))
    assert load_outgoing(tmp_path / "outgoing.json").files == (out,)


def test_output_saved_without_a_hash_loads_to_be_hashed_while_sent(tmp_path: Path) -> None:
    path = tmp_path / "outgoing.json"
    entry = {"name": "stats.fsa", "kind": "statistics", "path": str(tmp_path / "stats.fsa")}
    path.write_text(json.dumps({"result": {}, "files": [entry]}))
    (loaded,) = load_outgoing(path).files
    assert loaded.sha256 == "" and loaded.kind is ArtifactKind.STATISTICS
