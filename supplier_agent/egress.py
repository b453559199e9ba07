"""The site's egress gate and its record of everything that left.

The gate runs in the agent, before any data is read for a task, so a broker that asks for
more than the site allows gets a refusal with the reason, and nothing leaves.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from fedsynth.jobs import JobSpec, Topology
from fedsynth.plans import TaskKind
from supplier_agent.config import ArtifactKind, EgressPolicy

EXACT_STATISTICS = frozenset({TaskKind.MARGINAL_STATS, TaskKind.DEPENDENCE_STATS})
"""Task kinds that send exact sums of the site's rows for the broker to merge and return."""


class EgressRefused(PermissionError):
    """A task that would send something this site's policy does not allow."""


def check_egress(policy: EgressPolicy, topology: Topology, artifact: ArtifactKind) -> None:
    """Refuse, with a reason for the operator, what the site's policy does not allow."""
    if topology not in policy.topologies:
        allowed = ", ".join(sorted(t.value for t in policy.topologies)) or "none"
        raise EgressRefused(
            f"this site does not take part in {topology.value!r} jobs (it accepts: {allowed})"
        )
    if artifact not in policy.allow:
        allowed = ", ".join(sorted(a.value for a in policy.allow)) or "nothing"
        raise EgressRefused(
            f"this site's egress policy does not let {artifact.value!r} data leave "
            f"(it allows: {allowed})"
        )


def check_parties(policy: EgressPolicy, job: JobSpec, kind: TaskKind) -> None:
    """Refuse exact statistics for a job whose merged sums would let a site read another's."""
    if kind not in EXACT_STATISTICS:
        return
    suppliers = len({part.supplier for part in job.suppliers})
    parties = min(job.quorum or suppliers, suppliers)
    if parties < policy.min_parties:
        raise EgressRefused(
            f"this job may merge the exact statistics of {parties} site(s), fewer than this "
            f"site's egress.min_parties ({policy.min_parties}): each site gets the merged sums "
            "back and could subtract its own to read the others'; add sites, or use a DP "
            "synthesizer"
        )


@dataclass(frozen=True)
class EgressRecord:
    """One artifact that left the site."""

    at: str
    job: str
    task: str
    artifact: str
    sha256: str
    size: int
    destination: str


class EgressLog:
    """Append-only JSON-lines log of every artifact sent, fsynced before the send counts."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(
        self, *, job: str, task: str, artifact: ArtifactKind, sha256: str, size: int, to: str
    ) -> EgressRecord:
        entry = EgressRecord(
            at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            job=job,
            task=task,
            artifact=artifact.value,
            sha256=sha256,
            size=size,
            destination=to,
        )
        line = json.dumps(asdict(entry), sort_keys=True) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return entry

    def entries(self) -> list[EgressRecord]:
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as fh:
            return [EgressRecord(**json.loads(line)) for line in fh if line.strip()]
