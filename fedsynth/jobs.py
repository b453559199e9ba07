"""Job specifications: what an operator asks the federation to synthesize, and how.

A `JobSpec` is written as YAML by an operator, sent to the broker as JSON, and stored with the
SHA-256 of its canonical JSON, which every release attestation cites.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from fedsynth.audit.policy import AuditPolicy
from fedsynth.documents import describe_problems
from fedsynth.prep.pipeline import output_schema
from fedsynth.prep.spec import PrepSpec
from fedsynth.privacy.spec import PrivacySpec
from fedsynth.schema import TableSchema
from fedsynth.yaml12 import load_yaml

if TYPE_CHECKING:
    from fedsynth.synth.constraints import ConstraintBase

DP_SYNTHESIZERS = frozenset({"dp-marginal", "dp-copula"})
"""Synthesizers that are differentially private by construction: they need a privacy section."""
DP_CAPABLE = DP_SYNTHESIZERS | {"tvae"}
"""Synthesizers a privacy section applies to (`tvae` trains with DP-SGD when it has one)."""
FEDERATED_SYNTHESIZERS = ("copula", "dp-marginal", "dp-copula")
"""Synthesizers fitted from sums that k suppliers can add up (`federated` jobs)."""
PRIVACY_PARAMS = frozenset({"epsilon", "delta"})
"""Synthesizer parameters a job's privacy section owns (and `clip` for dp-copula)."""


class Topology(StrEnum):
    """Where preparation and synthesis happen (see DESIGN.md §2)."""

    LOCAL = "local"
    FEDERATED = "federated"
    PREPARED = "prepared"
    CENTRAL = "central"


class JobState(StrEnum):
    """Lifecycle of a job on the broker."""

    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}


class SupplierSource(BaseModel):
    """A supplier taking part in the job and the name of its configured data source."""

    model_config = ConfigDict(extra="forbid")

    supplier: str = Field(min_length=1)
    source: str = Field(min_length=1, description="Source name in the supplier agent's config.")
    columns: list[str] | None = Field(
        None,
        description="Schema columns this source holds when sources are split by column "
        "(vertical partitions, linked on tokens); default: every column.",
    )
    weight: float = Field(
        1.0,
        gt=0,
        le=1e12,
        description="`local` only: this supplier's part of the released rows, relative to the "
        "others' (e.g. its row count), so the merged release keeps the sites' proportions; "
        "default: equal parts.",
    )


MAX_ROWS = 100_000_000
"""The most rows a job may ask for: the broker samples a release in memory, so an unbounded
count would let one job spec exhaust the broker's memory."""


class SynthesizerSpec(BaseModel):
    """Which synthesizer to fit, by registered name, and its constructor parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        from fedsynth.synth import REGISTRY

        if value not in REGISTRY:
            raise ValueError(f"no synthesizer called {value!r}; known: {sorted(REGISTRY)}")
        return value

    @model_validator(mode="after")
    def _known_params(self) -> SynthesizerSpec:
        """Refuse a parameter the model does not take, or of the wrong type, here rather than
        as a TypeError at a site."""
        from fedsynth.synth.base import check_model_parameters

        check_model_parameters(self.name, self.params)
        return self


class Timeouts(BaseModel):
    """How long the broker waits, in seconds, before it gives up."""

    model_config = ConfigDict(extra="forbid")

    task_s: int = Field(3600, ge=1, description="For one supplier task.")
    job_s: int = Field(86400, ge=1, description="For the whole job.")


class JobSpec(BaseModel):
    """A synthesis job: who supplies which source, the common schema, the model and the policy."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]+$",
        description="A label for people: printable text, at most 200 characters.",
    )
    topology: Topology
    suppliers: list[SupplierSource] = Field(min_length=1)
    table_schema: TableSchema = Field(alias="schema")
    synthesizer: SynthesizerSpec
    rows: int = Field(
        ge=1,
        le=MAX_ROWS,
        description="Rows to sample for the released dataset (the broker holds them in memory).",
    )
    target: str | None = Field(None, description="Column used for utility (TSTR) audits.")
    audit_policy: AuditPolicy = Field(default_factory=AuditPolicy)
    prep: dict[str, PrepSpec] = Field(
        default_factory=dict,
        description="Preparation spec per supplier name; a supplier left out gets the default.",
    )
    merge_source_column: bool = Field(
        False, description="In `local` jobs, add a `source` column naming each row's supplier."
    )
    holdout_share: float = Field(
        0.2, gt=0, lt=1, description="Share of real rows held out for the audit's baselines."
    )
    seed: int = Field(0, ge=0, description="Seed for splits and sampling: reruns give the same.")
    quorum: int | None = Field(
        None, ge=1, description="Suppliers that must finish; default all of them."
    )
    timeouts: Timeouts = Field(default_factory=Timeouts)
    privacy: PrivacySpec | None = Field(
        None,
        description="The (epsilon, delta) this job may spend; required by a DP synthesizer "
        "(dp-marginal, dp-copula, or tvae trained with DP-SGD), refused by any other.",
    )

    @field_validator("suppliers")
    @classmethod
    def _unique_suppliers(cls, value: list[SupplierSource]) -> list[SupplierSource]:
        names = [s.supplier for s in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"suppliers listed more than once: {repeated}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        problems = (
            self._structure_problems() + self._privacy_problems() + self._constraint_problems()
        )
        if problems:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("job_spec", "{message}", {"message": message}),
                        loc=loc,
                        input=None,
                    )
                    for loc, message in problems
                ],
            )
        return self

    def _structure_problems(self) -> list[tuple[tuple[str, ...], str]]:
        problems: list[tuple[tuple[str, ...], str]] = []
        if self.quorum is not None and self.quorum > len(self.suppliers):
            problems.append(
                (
                    ("quorum",),
                    f"quorum {self.quorum} exceeds the {len(self.suppliers)} supplier(s) listed",
                )
            )
        if self.target is not None and self.target not in self.table_schema.names:
            problems.append((("target",), f"target {self.target!r} is not a schema column"))
        name = self.synthesizer.name
        fedavg = name == "tvae" and self.privacy is not None
        if (
            self.topology is Topology.FEDERATED
            and name not in FEDERATED_SYNTHESIZERS
            and not fedavg
        ):
            hint = (
                "; tvae is trained by federated averaging with DP-SGD only: add a privacy section"
                if name == "tvae"
                else ""
            )
            problems.append(
                (
                    ("synthesizer", "name"),
                    f"federated jobs fit from merged statistics; synthesizer {name!r} is not "
                    f"mergeable, use {', '.join(map(repr, FEDERATED_SYNTHESIZERS))}{hint}",
                )
            )
        for s in self.suppliers:
            unknown = sorted(set(s.columns or []) - set(self.table_schema.names))
            if unknown:
                problems.append(
                    (
                        ("suppliers",),
                        f"supplier {s.supplier!r} lists columns {unknown} not in the schema",
                    )
                )
        if self.vertical:
            if self.topology is not Topology.PREPARED:
                problems.append(
                    (
                        ("topology",),
                        "sources split by column are linked on tokens made at the sites with "
                        "their shared secret, which the broker never holds: use topology "
                        "'prepared'",
                    )
                )
            unlinked = [s.supplier for s in self.suppliers if not self.prep_for_has_linkage(s)]
            if unlinked:
                problems.append(
                    (("prep",), f"suppliers {unlinked} need a prep spec with a 'linkage' section")
                )
        for s in self.suppliers:
            prep = self.prep.get(s.supplier)
            if prep is not None and prep.source != s.source:
                problems.append(
                    (
                        ("prep", s.supplier, "source"),
                        f"the prep spec of {s.supplier!r} is for source {prep.source!r}, but the "
                        f"job takes its source {s.source!r}: make the two names agree",
                    )
                )
        weighted = [s.supplier for s in self.suppliers if s.weight != 1.0]
        if weighted and self.topology is not Topology.LOCAL:
            problems.append(
                (
                    ("suppliers",),
                    f"suppliers {weighted} have a weight, which only splits the rows of a "
                    f"'local' job; a {self.topology.value!r} job samples from one model",
                )
            )
        strangers = sorted(set(self.prep) - {s.supplier for s in self.suppliers})
        if strangers:
            problems.append(
                (("prep",), f"prep specs given for suppliers not in the job: {strangers}")
            )
        return problems

    def _privacy_problems(self) -> list[tuple[tuple[str, ...], str]]:
        """A DP synthesizer takes its budget from the privacy section, and only from there."""
        name = self.synthesizer.name
        problems: list[tuple[tuple[str, ...], str]] = []
        if name in DP_SYNTHESIZERS and self.privacy is None:
            problems.append(
                (
                    ("privacy",),
                    f"synthesizer {name!r} is differentially private: add a 'privacy' section "
                    "with the epsilon (and delta) this job may spend",
                )
            )
        if self.privacy is not None and name not in DP_CAPABLE:
            problems.append(
                (
                    ("privacy",),
                    f"synthesizer {name!r} is not differentially private, so a privacy section "
                    f"would promise what it cannot keep: use one of {sorted(DP_CAPABLE)} or "
                    "remove the section",
                )
            )
        owned = PRIVACY_PARAMS | ({"clip"} if name == "dp-copula" else set())
        for param in sorted(owned & set(self.synthesizer.params)):
            if name in DP_CAPABLE:
                problems.append(
                    (
                        ("synthesizer", "params", param),
                        f"{param} is set by the job's privacy section (privacy.{param}), not "
                        "by synthesizer params: move it there",
                    )
                )
        return problems

    def _constraint_problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Refuse constraints that do not fit the released schema here, not at every site."""
        from fedsynth.synth.constraints import ConstraintError

        try:
            schema = self.model_schema()
            for constraint in self.constraints():
                constraint.bind(schema)
        except ConstraintError as exc:
            return [(("synthesizer", "params", "constraints"), str(exc))]
        return []

    def constraints(self) -> list[ConstraintBase]:
        """The synthesizer's declared constraints: the sites' and the broker's audits check
        them on the synthetic rows too."""
        from fedsynth.synth.constraints import parse_constraints

        items = self.synthesizer.params.get("constraints") or []
        return parse_constraints(items, source="synthesizer.params.constraints")

    def model_params(self) -> dict[str, Any]:
        """The synthesizer's constructor parameters, with the budget from the privacy section."""
        params = dict(self.synthesizer.params)
        if self.privacy is not None:
            params |= {"epsilon": self.privacy.epsilon, "delta": self.privacy.delta}
            if self.synthesizer.name == "dp-copula":
                params["clip"] = self.privacy.clip
        return params

    @property
    def differentially_private(self) -> bool:
        """Whether the job's synthesizer spends a privacy budget."""
        return self.privacy is not None

    def prep_for(self, supplier: str, source: str) -> PrepSpec:
        """The preparation `supplier` applies to `source`: its own spec, or the default one."""
        return self.prep.get(supplier) or PrepSpec(source=source)

    def _entry(self, supplier: str) -> SupplierSource:
        """`supplier`'s entry in the job; a JobSpecError naming the job's suppliers otherwise,
        so a task for a supplier the job does not name is refused with a readable reason."""
        for entry in self.suppliers:
            if entry.supplier == supplier:
                return entry
        named = ", ".join(repr(s.supplier) for s in self.suppliers)
        raise JobSpecError(
            f"job {self.name!r} does not name supplier {supplier!r}; its suppliers are {named}"
        )

    def source_of(self, supplier: str) -> str:
        """The source `supplier` contributes to the job."""
        return self._entry(supplier).source

    def model_schema(self) -> TableSchema:
        """What is synthesized and released: the common schema without direct identifiers."""
        return output_schema(self.table_schema, PrepSpec(source=self.name))

    @property
    def vertical(self) -> bool:
        """Whether the sources hold different columns of the same people."""
        return any(s.columns is not None for s in self.suppliers)

    def prep_for_has_linkage(self, source: SupplierSource) -> bool:
        prep = self.prep.get(source.supplier)
        return prep is not None and prep.linkage is not None

    def schema_for(self, supplier: str) -> TableSchema:
        """The part of the common schema `supplier` holds (its columns and the identifiers)."""
        listed = self._entry(supplier).columns
        if listed is None:
            return self.table_schema
        keep = set(listed)
        columns = [c for c in self.table_schema.columns if c.name in keep or c.kind == "identifier"]
        schema = self.table_schema
        return TableSchema(name=schema.name, description=schema.description, columns=columns)

    def canonical_json(self) -> bytes:
        """Sorted, compact JSON: the bytes that `spec_hash` covers."""
        data = self.model_dump(mode="json", by_alias=True)
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(self.canonical_json()).hexdigest()

    @classmethod
    def from_json(cls, data: bytes | str, *, source: str = "<json>") -> JobSpec:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise JobSpecError(describe_problems(source, exc, "job spec", cls)) from exc

    @classmethod
    def load(cls, path: str | Path) -> JobSpec:
        """Read a job spec from YAML (or JSON)."""
        path = Path(path)
        try:
            data = load_yaml(path.read_text("utf-8"))
        except FileNotFoundError as exc:
            raise JobSpecError(f"{path}: job spec not found") from exc
        except UnicodeDecodeError as exc:
            raise JobSpecError(f"{path}: not UTF-8 text; save the job spec as UTF-8") from exc
        except OSError as exc:
            raise JobSpecError(f"{path}: cannot read the job spec: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise JobSpecError(f"{path}: not valid YAML: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise JobSpecError(describe_problems(str(path), exc, "job spec", cls, data)) from exc


class JobSpecError(ValueError):
    """A job spec that cannot be used; the message names the source and every problem."""
