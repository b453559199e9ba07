"""AES-256-GCM encryption at rest, streamed in segments so memory stays bounded.

File format: magic `FSE1`, then segments `[u32 length][12-byte nonce][ciphertext+tag]`. Each
segment's associated data binds the file id, its index and whether it is the last, so segments
cannot be reordered, dropped, spliced between files or truncated away. A file is complete only
when it ends with its final (possibly empty) segment.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedsynth.security.certificates import write_private

MAGIC = b"FSE1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_LENGTH = struct.Struct(">I")


class Appendable(Protocol):
    """Where a segment writer appends: an open binary file, or a direct appender."""

    def write(self, data: bytes, /) -> int: ...

    def tell(self) -> int: ...


class DecryptionError(ValueError):
    """Ciphertext that fails authentication: tampered, truncated, or under another key."""


def create_key_file(path: str | Path) -> None:
    """Write a fresh random 256-bit key (mode 0600); refuse to overwrite an existing one."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: key file exists; refusing to overwrite it")
    write_private(path, os.urandom(KEY_BYTES))


def key_fingerprint(key: bytes) -> str:
    """A public check value of an at-rest key (HMAC of a fixed label): it tells whether a key
    file is the one a state was created with, and reveals nothing of the key."""
    return hmac.new(key, b"fedsynth at-rest key fingerprint", hashlib.sha256).hexdigest()


def load_key_file(path: str | Path) -> bytes:
    path = Path(path)
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: expected a {KEY_BYTES}-byte key, found {len(key)} bytes")
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path}: key file is readable by others; run chmod 600 {path}")
    return key


def _aad(file_id: bytes, index: int, final: bool) -> bytes:
    return file_id + struct.pack(">Q?", index, final)


class SegmentWriter:
    """Append plaintext to an encrypted file one segment per `write`; `close` seals it."""

    def __init__(self, key: bytes, file_id: bytes, fh: Appendable, *, next_index: int = 0) -> None:
        self._aead = AESGCM(key)
        self._file_id = file_id
        self._fh = fh
        self._index = next_index
        if fh.tell() == 0:
            fh.write(MAGIC)

    def write(self, data: bytes) -> None:
        self._segment(data, final=False)

    def close(self) -> None:
        self._segment(b"", final=True)

    def _segment(self, data: bytes, *, final: bool) -> None:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, data, _aad(self._file_id, self._index, final))
        self._fh.write(_LENGTH.pack(len(sealed)) + nonce + sealed)
        self._index += 1


def read_segments(
    key: bytes, file_id: bytes, fh: BinaryIO, *, require_final: bool = True
) -> Iterator[tuple[int, bytes]]:
    """Yield (end offset in the file, plaintext) per segment, authenticating each.

    With `require_final=False` an unsealed file (an upload in progress) is read up to its last
    whole segment and a torn tail is ignored.
    """
    aead = AESGCM(key)
    if fh.read(len(MAGIC)) != MAGIC:
        raise DecryptionError("not an encrypted fedsynth file (bad magic)")
    position = len(MAGIC)
    index = 0
    while True:
        head = fh.read(_LENGTH.size + NONCE_BYTES)
        if len(head) < _LENGTH.size + NONCE_BYTES:
            break
        (length,) = _LENGTH.unpack(head[: _LENGTH.size])
        sealed = fh.read(length)
        if len(sealed) < length:
            break
        plain = b""
        for final in (False, True):
            try:
                plain = aead.decrypt(head[_LENGTH.size :], sealed, _aad(file_id, index, final))
            except InvalidTag:
                continue
            if final:
                yield position + len(head) + length, b""
                return
            break
        else:
            raise DecryptionError(f"segment {index} fails authentication")
        position += len(head) + length
        index += 1
        yield position, plain
    if require_final:
        raise DecryptionError("encrypted file is truncated (no final segment)")
