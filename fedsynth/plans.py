"""Topology plans: each topology is an ordered list of steps, each done by one party.

The broker's orchestrator runs any plan the same way: a supplier step becomes one task per
participating supplier (its `kind` names the agent's handler), a broker step runs the broker
action of that name. A step's `inputs` name artifacts produced by earlier broker steps that the
suppliers may fetch. A new topology is a new plan here, not new plumbing.

A `federated` job with a DP synthesizer runs the model's measurement rounds (as many as it plans
from the public schema); under secure aggregation each round is announce keys -> collect them ->
measure and mask -> unmask the sum, and a round whose masked vectors do not all arrive is started
again without the missing suppliers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from fedsynth.jobs import JobSpec, Topology
from fedsynth.privacy.accountant import PrivacyCost

MAX_DP_ROUNDS = 8
"""More measurement rounds than any DP model here plans; a larger round number is refused."""


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
    SECAGG_ANNOUNCE = "secagg_announce"
    DP_MEASURE = "dp_measure"


@dataclass(frozen=True)
class Step:
    """One step of a plan: its name, the party doing it, and what it does."""

    name: str
    party: Party
    action: str
    inputs: tuple[str, ...] = ()
    round: int = 0
    """The DP measurement round (from 1) this step belongs to; 0 outside DP rounds."""


class ChargeReport(BaseModel):
    """A charge a supplier's ledger recorded before its DP release left the site: the cost as
    an RDP curve on `ORDERS` and/or an (epsilon, delta) part, so charges compose tightly."""

    model_config = ConfigDict(extra="forbid")

    release_id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    label: str = ""
    rdp: list[float] | None = None
    epsilon: float = Field(0.0, ge=0, allow_inf_nan=False)
    delta: float = Field(0.0, ge=0, lt=1, allow_inf_nan=False)

    @classmethod
    def of(cls, release_id: str, source: str, cost: PrivacyCost) -> ChargeReport:
        rdp = None if cost.rdp is None else list(cost.rdp)
        return cls(
            release_id=release_id,
            source=source,
            label=cost.label,
            rdp=rdp,
            epsilon=cost.epsilon,
            delta=cost.delta,
        )

    def cost(self) -> PrivacyCost:
        """The charged cost (ValueError when the curve is malformed)."""
        rdp = None if self.rdp is None else tuple(self.rdp)
        return PrivacyCost(rdp=rdp, epsilon=self.epsilon, delta=self.delta, label=self.label)


class RoundInfo(BaseModel):
    """What a supplier needs to take part in one DP measurement round."""

    model_config = ConfigDict(extra="forbid")

    number: int = Field(ge=1, le=MAX_DP_ROUNDS)
    round_id: str = Field(min_length=1)
    participants: list[str] = Field(min_length=1)
    secure: bool


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
    charges: list[ChargeReport] = Field(
        default_factory=list, description="Privacy charges made for what it sent."
    )


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


def _dp_round(number: int, secure: bool) -> tuple[Step, ...]:
    measured = tuple(f"round_{earlier}_sum" for earlier in range(1, number))
    measure = TaskKind.DP_MEASURE.value
    if not secure:
        return (
            Step(f"measure_{number}", Party.SUPPLIERS, measure, measured, number),
            Step(f"sum_{number}", Party.BROKER, "sum_round", (), number),
        )
    return (
        Step(f"announce_{number}", Party.SUPPLIERS, TaskKind.SECAGG_ANNOUNCE.value, (), number),
        Step(f"collect_keys_{number}", Party.BROKER, "collect_keys", (), number),
        Step(f"measure_{number}", Party.SUPPLIERS, measure, (f"keys_{number}", *measured), number),
        Step(f"sum_{number}", Party.BROKER, "sum_round", (), number),
    )


def dp_federated_plan(rounds: int, secure: bool) -> tuple[Step, ...]:
    """The model's DP measurement rounds, then the sites audit the candidate and the broker
    releases it."""
    return (
        *(step for number in range(1, rounds + 1) for step in _dp_round(number, secure)),
        _suppliers(TaskKind.AUDIT_CANDIDATE, "candidate"),
        _broker("release_audited"),
    )


def plan_for(topology: Topology) -> tuple[Step, ...]:
    """The steps of `topology`, in order."""
    return PLANS[topology]


def plan_of(spec: JobSpec) -> tuple[Step, ...]:
    """The steps of `spec`'s job: its topology's plan, or DP rounds for a DP federated fit."""
    if spec.topology is Topology.FEDERATED and spec.privacy is not None:
        from fedsynth.privacy.rounds import unstarted_model

        rounds = unstarted_model(spec).planned_rounds(spec.model_schema())
        return dp_federated_plan(rounds, spec.privacy.secure_aggregation)
    return plan_for(spec.topology)


def round_start(plan: tuple[Step, ...], number: int) -> int:
    """Index of the first step of DP round `number` in `plan`."""
    return next(i for i, s in enumerate(plan) if s.round == number)
