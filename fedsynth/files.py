"""Crash-safe file writing: readers see the old file or the complete new one, never half."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync and rename it over `path`.

    Without `mode` the file is private (0600, from mkstemp). With `mode` (e.g. 0o644 for a public
    certificate) a new file gets exactly that mode, and rewriting an existing file keeps its mode
    and, where this process may set them, its owner and group, so an operator's chmod/chown for
    a service user survives the rewrite. On any exception the temporary file is removed and
    `path` is left untouched.
    """
    if mode is not None and not 0 <= mode <= 0o777:
        raise ValueError(f"mode {mode:#o}: give permission bits only, e.g. 0o644")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if mode is not None:
            _take_permissions(tmp, path, mode)
        yield tmp
        commit_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _take_permissions(tmp: Path, path: Path, mode: int) -> None:
    """Give `tmp` the mode and owner of the file it will replace, or `mode` if there is none."""
    try:
        current = path.stat()
    except FileNotFoundError:
        os.chmod(tmp, mode)
        return
    keep_owner(tmp, path)
    os.chmod(tmp, stat.S_IMODE(current.st_mode))


def keep_owner(tmp: Path, path: Path) -> None:
    """Give `tmp` the owner and group of `path`, the file it will replace (if there is one),
    as far as this process may: a key rotated by root stays readable by its service user."""
    try:
        current = path.stat()
    except FileNotFoundError:
        return
    mine = tmp.stat()
    if (current.st_uid, current.st_gid) != (mine.st_uid, mine.st_gid):
        try:
            os.chown(tmp, current.st_uid, current.st_gid)
        except PermissionError:  # not root: keep at least a group this user belongs to
            with contextlib.suppress(PermissionError):
                os.chown(tmp, -1, current.st_gid)


def commit_file(tmp: Path, path: Path) -> None:
    """Make the complete file `tmp` durable and rename it over `path` (same folder)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | Path, data: bytes, *, mode: int | None = None) -> None:
    """Write `data` to `path` atomically; `mode` as in `atomic_path`."""
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(data)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OutputPathError(ValueError):
    """An output path a command must not or cannot write; the message names it and the fix."""


def check_outputs(
    outputs: Mapping[str, str | Path | None], inputs: Iterable[str | Path | None] = ()
) -> None:
    """Refuse, before any work is done, outputs that would replace an input or another output,
    or that cannot be a file: an existing folder, or a path under a file. `outputs` maps each
    option (e.g. "--out") to its path; None entries are skipped. A missing folder is fine: the
    writers create it."""
    sources = [Path(p) for p in inputs if p is not None]
    claimed: dict[Path, str] = {}
    for option, value in outputs.items():
        if value is None:
            continue
        path = Path(value)
        for source in sources:
            if _same_file(path, source):
                raise OutputPathError(
                    f"{option} {path}: that is the input {source}, which writing would destroy; "
                    "write to another file"
                )
        resolved = path.resolve()
        if resolved in claimed:
            raise OutputPathError(
                f"{option} {path}: {claimed[resolved]} writes there too; give each output its "
                "own file"
            )
        claimed[resolved] = option
        if path.is_dir():
            raise OutputPathError(f"{option} {path}: is a folder; give a file name inside it")
        for parent in resolved.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise OutputPathError(
                        f"{option} {path}: {parent} is a file, not a folder; choose another path"
                    )
                break


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through links too)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()
