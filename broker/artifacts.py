"""Content-addressed artifact directory: objects named by the SHA-256 of their plaintext.

Objects are written to a temporary file, fsynced and renamed, so a name always holds the complete
object. Raw and prepared rows are stored encrypted (AES-256-GCM segments, `.enc` suffix).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fedsynth.files import atomic_path
from fedsynth.security.atrest import MAGIC, Appendable, SegmentWriter, read_segments
from fedsynth.wire.transfer import ObjectDigest, read_chunks


def object_path(root: Path, sha256: str, *, encrypted: bool = False) -> Path:
    """Where the store under `root` keeps the object named `sha256`."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"{sha256!r} is not a lowercase hex SHA-256")
    return root / "sha256" / sha256[:2] / (sha256 + (".enc" if encrypted else ""))


class ArtifactStore:
    """Objects under `root/sha256/<first two hex>/<sha256>[.enc]`."""

    def __init__(self, root: str | Path, key: bytes) -> None:
        self.root = Path(root)
        self._key = key
        (self.root / "sha256").mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str, *, encrypted: bool = False) -> Path:
        return object_path(self.root, sha256, encrypted=encrypted)

    def has(self, sha256: str, *, encrypted: bool = False) -> bool:
        return self.path(sha256, encrypted=encrypted).exists()

    def put_bytes(self, data: bytes) -> ObjectDigest:
        digest = ObjectDigest(hashlib.sha256(data).hexdigest(), len(data))
        target = self.path(digest.sha256)
        if target.exists():
            _touch(target)
        else:
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
        return digest

    def put_file(self, source: str | Path) -> ObjectDigest:
        """Copy a file in, hashing as it streams; memory stays bounded."""
        staging = self.root / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=staging, suffix=".part")
        tmp = Path(name)
        hasher = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for _, block in read_chunks(source):
                    hasher.update(block)
                    out.write(block)
                    size += len(block)
                out.flush()
                os.fsync(out.fileno())
            digest = ObjectDigest(hasher.hexdigest(), size)
            self.adopt(tmp, digest.sha256, encrypted=False)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest

    def adopt(self, partial: Path, sha256: str, *, encrypted: bool) -> Path:
        """Move a verified, fsynced partial file to its content-addressed name.

        A name, once written, is never overwritten: if the object is already stored it is kept
        and `partial` deleted (the name is its content's hash, so nothing is lost). The link is
        atomic, so of two files adopted at once under one name only the first is kept.
        """
        target = self.path(sha256, encrypted=encrypted)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(partial, target)
        except FileExistsError:
            _touch(target)
        partial.unlink()
        return target

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    def read_encrypted(self, sha256: str) -> Iterator[bytes]:
        """Plaintext blocks of an encrypted object, each authenticated before it is yielded."""
        with open(self.path(sha256, encrypted=True), "rb") as fh:
            for _, block in read_segments(self._key, sha256.encode(), fh):
                if block:
                    yield block

    def encrypted_writer(self, sha256: str, fh: Appendable, next_index: int = 0) -> SegmentWriter:
        """A writer that encrypts an object named `sha256` segment by segment into `fh`."""
        return SegmentWriter(self._key, sha256.encode(), fh, next_index=next_index)

    def resume_encrypted(
        self, sha256: str, fh: BinaryIO, hasher: hashlib._Hash
    ) -> tuple[int, int, int]:
        """Scan an unfinished encrypted file, feeding its plaintext to `hasher`; return (byte
        length of its whole data segments, their count, plaintext size) so a writer can cut off a
        torn tail or a final seal and continue (only the final segment is empty)."""
        end, count, size = len(MAGIC), 0, 0
        for position, block in read_segments(self._key, sha256.encode(), fh, require_final=False):
            end = position
            count += 1
            size += len(block)
            hasher.update(block)
        return end, count, size

    def delete(self, sha256: str, *, encrypted: bool = False) -> None:
        self.path(sha256, encrypted=encrypted).unlink(missing_ok=True)


def _touch(path: Path) -> None:
    """Mark a stored object as written now: a job storing it again holds it as new, and
    retention (broker/retention.py) keeps objects written since the oldest unfinished job."""
    with contextlib.suppress(FileNotFoundError):
        os.utime(path)
