"""Direct (page-cache-bypassing) appends hold exactly the bytes written, across resumes."""

from __future__ import annotations

import errno
import os
import random
import resource
from pathlib import Path

import pytest

from fedsynth.wire.direct_file import BLOCK, DirectAppender

STAGING = 4 * BLOCK


def pieces(seed: int, total: int) -> list[bytes]:
    """Random-length pieces: some tiny, some spanning several staging buffers."""
    rng = random.Random(seed)
    out, left = [], total
    while left:
        size = min(left, rng.choice([1, 7, BLOCK - 1, BLOCK, 3 * BLOCK + 5, 2 * STAGING + 3]))
        out.append(os.urandom(size))
        left -= size
    return out


@pytest.mark.parametrize("direct", [True, False])
def test_appended_pieces_read_back_identical_with_flushes_between(
    tmp_path: Path, direct: bool
) -> None:
    path = tmp_path / "object.bin"
    data = pieces(1, 5 * STAGING + 123)
    with DirectAppender(path, staging_bytes=STAGING, direct=direct) as out:
        for i, piece in enumerate(data):
            out.write(piece)
            if i % 5 == 0:
                out.flush()
                assert path.read_bytes() == b"".join(data[: i + 1])
        assert out.tell() == sum(map(len, data))
    assert path.read_bytes() == b"".join(data)


@pytest.mark.parametrize("direct", [True, False])
def test_reopening_an_unaligned_file_appends_after_its_bytes(tmp_path: Path, direct: bool) -> None:
    path = tmp_path / "object.bin"
    head = os.urandom(2 * BLOCK + 17)
    path.write_bytes(head)
    tail = b"".join(pieces(2, 3 * STAGING + 9))
    with DirectAppender(path, staging_bytes=STAGING, direct=direct) as out:
        assert out.tell() == len(head)
        out.write(tail)
        out.fsync()
    assert path.read_bytes() == head + tail


def test_staging_must_be_whole_blocks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple"):
        DirectAppender(tmp_path / "x", staging_bytes=BLOCK + 1)


def test_a_failed_background_write_is_raised_by_the_next_call(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * STAGING, hard))
    try:
        out = DirectAppender(tmp_path / "object.bin", staging_bytes=STAGING)
        with pytest.raises(OSError) as caught:
            for piece in pieces(3, 8 * STAGING):
                out.write(piece)
            out.flush()
        with pytest.raises(OSError):
            out.close()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert caught.value.errno == errno.EFBIG
    assert (tmp_path / "object.bin").stat().st_size <= 2 * STAGING
