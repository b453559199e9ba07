"""The model file format: one versioned, self-describing file of JSON plus arrays, no pickle.

Layout: an 8-byte magic, the JSON header length (8 bytes, little endian), the UTF-8 JSON header,
an npz archive of the arrays (read with ``allow_pickle=False``), then the SHA-256 of everything
before it. The digest catches truncation and corruption before any byte is interpreted.

Arrays hold numbers only (bool, int, uint, float) and are stored uncompressed (``np.savez``), so
they never take more bytes than the section that carries them. A reader checks each member's
declared dtype and shape against that and against its own limit before inflating anything: a
small file cannot make a reader allocate a huge array.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedsynth.files import atomic_write_bytes

MAGIC = b"FSYNTH\x00\x01"
ARTIFACT_FORMAT_VERSION = 1
_DIGEST_BYTES = 32
_LENGTH = struct.Struct("<Q")
NUMERIC_KINDS = "biuf"
"""dtype kinds an artifact may hold: bool, signed and unsigned integers, floats."""


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


ArrayLimit = int | Callable[[ArtifactHeader], int]
"""The most bytes an artifact's arrays may take once read, or a function of the validated header
that gives it (for a reader that knows from the header, e.g. its schema, how large they can be)."""


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
            if array.dtype.kind not in NUMERIC_KINDS:
                raise ArtifactError(
                    f"array {name!r} holds {_describe(array.dtype)}; only numbers are stored"
                )
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
    def from_bytes(
        cls, data: bytes, *, source: str = "<bytes>", max_array_bytes: ArrayLimit | None = None
    ) -> Artifact:
        """Parse and validate; ArtifactError names the source and the problem otherwise.

        The arrays may take at most `max_array_bytes` once read (never more than the bytes that
        carry them); a file declaring more is refused before any array is inflated.
        """
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
        blob = payload[start + header_len :]
        limit = len(blob)
        if isinstance(max_array_bytes, int):
            limit = min(limit, max_array_bytes)
        elif max_array_bytes is not None:
            limit = min(limit, max_array_bytes(header))
        arrays = _read_arrays(blob, header.arrays, limit, source)
        return cls(kind=header.kind, model=header.model, body=header.body, arrays=arrays)

    def write(self, path: str | Path) -> None:
        """Write atomically to `path`."""
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def read(cls, path: str | Path, *, max_array_bytes: ArrayLimit | None = None) -> Artifact:
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactError(f"{path}: model file not found") from exc
        return cls.from_bytes(data, source=str(path), max_array_bytes=max_array_bytes)


_UNREADABLE = (
    zipfile.BadZipFile,
    zlib.error,
    ValueError,
    OSError,
    EOFError,
    NotImplementedError,
    RuntimeError,
)


def _read_arrays(blob: bytes, names: list[str], limit: int, source: str) -> dict[str, np.ndarray]:
    """The npz section's arrays, once every member's declared dtype and size passed the checks.

    Headers are read first (a few bytes of each member), so an array that is too large, or not
    numbers, is refused before anything is inflated or allocated.
    """
    unreadable = f"{source}: the array section cannot be read"
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            members = archive.infolist()
            found = sorted(m.filename.removesuffix(".npy") for m in members)
            if found != names or not all(m.filename.endswith(".npy") for m in members):
                raise ArtifactError(f"{source}: arrays {found} do not match the header's {names}")
            total = 0
            for member in members:
                with archive.open(member) as fh:
                    dtype, shape = _declared(fh)
                if dtype.kind not in NUMERIC_KINDS:
                    raise ArtifactError(
                        f"{unreadable}: member {member.filename!r} declares "
                        f"{_describe(dtype)}; only numbers are read"
                    )
                size = dtype.itemsize * math.prod(shape)
                total += size
                if total > limit:
                    raise ArtifactError(
                        f"{unreadable}: member {member.filename!r} declares shape {shape} of "
                        f"{dtype} ({size} bytes), bringing the arrays to {total} bytes, past "
                        f"their limit of {limit} bytes"
                    )
            arrays = {}
            for member in members:
                with archive.open(member) as fh:
                    array = np.lib.format.read_array(fh, allow_pickle=False)
                arrays[member.filename.removesuffix(".npy")] = array
            return arrays
    except ArtifactError:
        raise
    except _UNREADABLE as exc:
        raise ArtifactError(f"{unreadable}: {exc}") from exc


def _declared(fh: IO[bytes]) -> tuple[np.dtype[Any], tuple[int, ...]]:
    """The dtype and shape an npy member declares in its header (its first bytes only)."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ValueError(f"npy format version {version} is not read")
    if any(n < 0 for n in shape):
        raise ValueError(f"an array declares the negative shape {shape}")
    return dtype, shape


def _describe(dtype: np.dtype[Any]) -> str:
    return "Python objects" if dtype.hasobject else f"dtype {dtype.str!r}"


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fedsynth")
    except PackageNotFoundError:
        return "unknown"
