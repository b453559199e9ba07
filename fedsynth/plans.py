"""Topology plans: each topology is an ordered list of steps, each done by one party.

The broker's orchestrator runs any plan the same way: a supplier step becomes one task per
participating supplier (its `kind` names the agent's handler), a broker step runs the broker
action of that name. A step's `inputs` name artifacts produced by earlier broker steps that the
suppliers may fetch. A new topology is a new plan here, not new plumbing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from fedsynth.jobs import Topology


class Party(StrEnum):
    """Who performs a step."""

    SUPPLIERS = "suppliers"
    BROKER = "broker"


class TaskKind(StrEnum):
    """Work a supplier agent does for a step; each kind has one handler in the agent."""

    MARGINAL_STATS = "marginal_stats"
    DEPENDENCE_STATS = "dependence_stats"
    AUDIT_CANDIDATE = "audit_candidate"
    SYNTHESIZE_LOCALLY = "synthesize_locally"
    UPLOAD_PREPARED = "upload_prepared"
    UPLOAD_RAW = "upload_raw"


@dataclass(frozen=True)
class Step:
    """One step of a plan: its name, the party doing it, and what it does."""

    name: str
    party: Party
    action: str
    inputs: tuple[str, ...] = ()


class TaskOutcome(BaseModel):
    """What an agent reports for a finished task; validated by the broker on arrival."""

    model_config = ConfigDict(extra="forbid")

    uploads: dict[str, str] = Field(
        default_factory=dict, description="File name -> SHA-256 of each upload it made."
    )
    verdict: dict[str, str] | None = Field(
        None, description="The supplier's signed audit verdict (a SignedDocument's JSON form)."
    )
    rows: int | None = Field(None, ge=0, description="Rows of synthetic output it uploaded.")


def _suppliers(kind: TaskKind, *inputs: str) -> Step:
    return Step(kind.value, Party.SUPPLIERS, kind.value, inputs)


def _broker(action: str) -> Step:
    return Step(action, Party.BROKER, action)


PLANS: dict[Topology, tuple[Step, ...]] = {
    Topology.FEDERATED: (
        _suppliers(TaskKind.MARGINAL_STATS),
        _broker("merge_marginals"),
        _suppliers(TaskKind.DEPENDENCE_STATS, "marginal_stats"),
        _broker("fit_and_sample"),
        _suppliers(TaskKind.AUDIT_CANDIDATE, "candidate"),
        _broker("release_audited"),
    ),
    Topology.LOCAL: (
        _suppliers(TaskKind.SYNTHESIZE_LOCALLY),
        _broker("merge_and_release"),
    ),
    Topology.PREPARED: (
        _suppliers(TaskKind.UPLOAD_PREPARED),
        _broker("synthesize_centrally"),
        _broker("release_central"),
    ),
    Topology.CENTRAL: (
        _suppliers(TaskKind.UPLOAD_RAW),
        _broker("synthesize_centrally"),
        _broker("release_central"),
    ),
}


def plan_for(topology: Topology) -> tuple[Step, ...]:
    """The steps of `topology`, in order."""
    return PLANS[topology]
