"""Model files: round trip; clear errors on corrupt, truncated, wrong-version or unsafe files."""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedsynth.schema import TableSchema
from fedsynth.synth import Artifact, ArtifactError, GaussianCopula, Synthesizer
from fedsynth.synth.artifact import MAGIC


def _artifact() -> Artifact:
    return Artifact(
        kind="synthesizer",
        model="copula",
        body={"answer": 42},
        arrays={"a": np.arange(5.0), "b": np.eye(2)},
    )


def _reseal(payload: bytes) -> bytes:
    return payload + hashlib.sha256(payload).digest()


def test_artifact_bytes_round_trip_keeps_body_and_arrays() -> None:
    back = Artifact.from_bytes(_artifact().to_bytes())
    assert back.body == {"answer": 42}
    np.testing.assert_array_equal(back.arrays["b"], np.eye(2))


def test_truncated_file_is_refused_with_checksum_message() -> None:
    data = _artifact().to_bytes()
    with pytest.raises(ArtifactError, match="truncated or corrupt"):
        Artifact.from_bytes(data[:-40], source="model.fsm")


def test_flipped_byte_is_detected() -> None:
    data = bytearray(_artifact().to_bytes())
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        Artifact.from_bytes(bytes(data))


def test_other_file_is_not_taken_for_a_model() -> None:
    with pytest.raises(ArtifactError, match="not a fedsynth model file"):
        Artifact.from_bytes(b"PK\x03\x04 some zip file")


def test_wrong_header_version_names_the_supported_version() -> None:
    payload = _artifact().to_bytes()[:-32]
    (length,) = struct.unpack_from("<Q", payload, len(MAGIC))
    start = len(MAGIC) + 8
    header = json.loads(payload[start : start + length])
    header["format_version"] = 99
    new_header = json.dumps(header).encode()
    rebuilt = MAGIC + struct.pack("<Q", len(new_header)) + new_header + payload[start + length :]
    with pytest.raises(ArtifactError, match=r"version 99.*reads version 1"):
        Artifact.from_bytes(_reseal(rebuilt))


def test_wrong_container_version_is_refused() -> None:
    data = bytearray(_artifact().to_bytes())
    data[len(MAGIC) - 1] = 9
    with pytest.raises(ArtifactError, match="container version 9"):
        Artifact.from_bytes(bytes(data))


def test_pickled_object_arrays_are_never_loaded() -> None:
    """An attacker-built file with an object array (which needs pickle) is refused."""
    good = _artifact().to_bytes()[:-32]
    (length,) = struct.unpack_from("<Q", good, len(MAGIC))
    head = good[: len(MAGIC) + 8 + length]
    header = json.loads(head[len(MAGIC) + 8 :])
    header["arrays"] = ["evil"]
    new_header = json.dumps(header).encode()
    buffer = io.BytesIO()
    np.savez(buffer, evil=np.array([{"x": 1}], dtype=object))
    payload = MAGIC + struct.pack("<Q", len(new_header)) + new_header + buffer.getvalue()
    with pytest.raises(ArtifactError, match="array section cannot be read"):
        Artifact.from_bytes(_reseal(payload))


def test_object_arrays_are_refused_on_write() -> None:
    bad = Artifact("stats", "x", {}, {"o": np.array([object()], dtype=object)})
    with pytest.raises(ArtifactError, match="Python objects"):
        bad.to_bytes()


def test_model_file_round_trip_gives_identical_samples(
    tmp_path: Path, schema: TableSchema, make_patients: Callable[..., pd.DataFrame]
) -> None:
    model = GaussianCopula().fit(make_patients(800), schema)
    path = tmp_path / "model.fsm"
    model.save(path)
    loaded = Synthesizer.load(path)
    assert isinstance(loaded, GaussianCopula)
    assert loaded.sample(300, seed=5).equals(model.sample(300, seed=5))


def test_model_with_inconsistent_state_is_refused(
    schema: TableSchema, make_patients: Callable[..., pd.DataFrame]
) -> None:
    artifact = GaussianCopula().fit(make_patients(400), schema).to_artifact()
    artifact.arrays["correlation"] = np.ones((2, 2))
    with pytest.raises(ArtifactError, match="correlation must be"):
        Synthesizer.from_artifact(artifact)


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="model file not found"):
        Synthesizer.load(tmp_path / "absent.fsm")
