"""A site's synthetic output travels under the hash its signed verdict names: the agent declares
that hash when it uploads, so bytes altered in its outbox after signing are refused by the
broker before anything is stored, and the file is not read a second time to hash it."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from fedsynth.wire.stubs import SupplierStub
from fedsynth.wire.v1 import supplier_pb2
from supplier_agent.agent import SupplierAgent
from tests.federation.harness import STRICT, Federation, job, strict_site_task


class TamperingStub:
    """A real supplier stub that flips one byte of the file about to be uploaded, after the
    agent signed its verdict and just before the upload begins."""

    def __init__(self, stub: SupplierStub, target: Path) -> None:
        self._stub = stub
        self._target = target
        self.headers: list[supplier_pb2.UploadHeader] = []
        self.signed_sha256 = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    def BeginUpload(self, header: supplier_pb2.UploadHeader, **kw: Any) -> Any:
        self.headers.append(header)
        data = bytearray(self._target.read_bytes())
        self.signed_sha256 = hashlib.sha256(data).hexdigest()
        data[len(data) // 2] ^= 0xFF
        self._target.write_bytes(bytes(data))
        return self._stub.BeginUpload(header, **kw)


def test_output_altered_after_its_verdict_was_signed_is_refused_and_nothing_is_stored(
    federation: Federation, tmp_path: Path
) -> None:
    spec = job("tampered-outbox", "local", (STRICT,))
    with strict_site_task(federation, tmp_path / "state", spec) as (config, stub, task):
        outbox = config.state_dir / "outbox" / task.task_id / "synthetic.parquet"
        tampering = TamperingStub(stub, outbox)
        agent = SupplierAgent(config)
        agent.handle(tampering, task)
    (header,) = tampering.headers
    assert header.sha256 == tampering.signed_sha256
    recorded = agent.journal.result(task.task_id)
    assert recorded is not None and not recorded[0]
    error = json.loads(recorded[1])["error"]
    assert "DATA_LOSS" in error and f"declared {header.sha256}" in error
    with sqlite3.connect(federation.broker.state_dir / "broker.sqlite3") as db:
        uploads = db.execute("SELECT state FROM uploads WHERE job_id = ?", (task.job_id,))
        assert [state for (state,) in uploads] == ["rejected"]
    assert federation.wait(task.job_id).state == "failed"
