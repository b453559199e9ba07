"""What a task handler hands back to the agent: its result, its files, or a refusal."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supplier_agent.config import ArtifactKind


class TaskRefused(Exception):
    """The site declines the task; the message is the reason the operator reads."""


class TaskClosed(Exception):
    """The broker closed the task while the site worked on it (its job was cancelled, failed
    or ran out of time): the work stops there and nothing is sent."""


@dataclass(frozen=True)
class OutFile:
    """A file produced for the broker, what kind of artifact it is for the egress policy, and
    its SHA-256 when its handler computed it already (a signed verdict names it): the upload
    declares that hash instead of reading the file once more, and the broker refuses bytes that
    no longer match it."""

    name: str
    kind: ArtifactKind
    path: Path
    sha256: str = ""


@dataclass(frozen=True)
class Outgoing:
    """A handler's output: the JSON result and the files that go with it."""

    result: dict[str, Any]
    files: tuple[OutFile, ...] = ()
