"""The model file format: one versioned, self-describing file of JSON plus arrays, no pickle.

Layout: an 8-byte magic, the JSON header length (8 bytes, little endian), the UTF-8 JSON header,
an npz archive of the arrays (read with ``allow_pickle=False``), then the SHA-256 of everything
before it. The digest catches truncation and corruption before any byte is interpreted.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedsynth.files import atomic_write_bytes

MAGIC = b"FSYNTH\x00\x01"
ARTIFACT_FORMAT_VERSION = 1
_DIGEST_BYTES = 32
_LENGTH = struct.Struct("<Q")


class ArtifactError(ValueError):
    """A model or statistics file that cannot be read; the message says what is wrong and why."""


class ArtifactHeader(BaseModel):
    """The JSON part of an artifact, validated on load because files cross party boundaries."""

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = ARTIFACT_FORMAT_VERSION
    kind: Literal["synthesizer", "stats"]
    model: str = Field(min_length=1, description="Registry name of the model, e.g. 'copula'.")
    fedsynth_version: str
    body: dict[str, Any]
    arrays: list[str] = Field(description="Names of the arrays stored beside the header.")


@dataclass
class Artifact:
    """A model or statistics object as JSON-compatible data plus named numeric arrays."""

    kind: Literal["synthesizer", "stats"]
    model: str
    body: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Serialise to the self-checking container described in the module docstring."""
        for name, array in self.arrays.items():
            if array.dtype.hasobject:
                raise ArtifactError(f"array {name!r} holds Python objects; only numbers are stored")
        header = ArtifactHeader(
            kind=self.kind,
            model=self.model,
            fedsynth_version=_package_version(),
            body=self.body,
            arrays=sorted(self.arrays),
        )
        header_bytes = json.dumps(header.model_dump(mode="json"), allow_nan=False).encode()
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **self.arrays)
        payload = MAGIC + _LENGTH.pack(len(header_bytes)) + header_bytes + buffer.getvalue()
        return payload + hashlib.sha256(payload).digest()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>") -> Artifact:
        """Parse and validate; ArtifactError names the source and the problem otherwise."""
        if not data.startswith(MAGIC[:6]):
            raise ArtifactError(f"{source}: not a fedsynth model file (bad magic bytes)")
        if data[: len(MAGIC)] != MAGIC:
            raise ArtifactError(
                f"{source}: container version {data[len(MAGIC) - 1]} is not supported; "
                f"this fedsynth reads version {MAGIC[-1]}: refit the model with this version"
            )
        if len(data) < len(MAGIC) + _LENGTH.size + _DIGEST_BYTES:
            raise ArtifactError(f"{source}: file is truncated ({len(data)} bytes)")
        payload, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
        if hashlib.sha256(payload).digest() != digest:
            raise ArtifactError(
                f"{source}: checksum mismatch: the file is truncated or corrupt; "
                "copy it again from its origin"
            )
        (header_len,) = _LENGTH.unpack_from(payload, len(MAGIC))
        start = len(MAGIC) + _LENGTH.size
        try:
            raw_header = json.loads(payload[start : start + header_len].decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{source}: header is not valid JSON: {exc}") from exc
        if isinstance(raw_header, dict) and raw_header.get("format_version") != 1:
            raise ArtifactError(
                f"{source}: artifact format version {raw_header.get('format_version')!r} is not "
                f"supported; this fedsynth reads version {ARTIFACT_FORMAT_VERSION}"
            )
        try:
            header = ArtifactHeader.model_validate(raw_header)
        except ValidationError as exc:
            raise ArtifactError(f"{source}: invalid header: {exc}") from exc
        arrays = _read_arrays(payload[start + header_len :], source)
        if sorted(arrays) != header.arrays:
            raise ArtifactError(
                f"{source}: arrays {sorted(arrays)} do not match the header's {header.arrays}"
            )
        return cls(kind=header.kind, model=header.model, body=header.body, arrays=arrays)

    def write(self, path: str | Path) -> None:
        """Write atomically to `path`."""
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def read(cls, path: str | Path) -> Artifact:
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactError(f"{path}: model file not found") from exc
        return cls.from_bytes(data, source=str(path))


def _read_arrays(blob: bytes, source: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ArtifactError(f"{source}: the array section cannot be read: {exc}") from exc


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fedsynth")
    except PackageNotFoundError:
        return "unknown"
