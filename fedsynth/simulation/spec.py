"""`SimulationSpec`: a table described from background knowledge instead of real rows.

An analyst declares variables, each with a distribution or a dependency on earlier variables:
conditional probability tables, linear structural equations with (bounded) noise, logistic
equations for yes/no outcomes, dates as offsets from other dates, names and record numbers,
and missingness. Equations use the safe expression language of `fedsynth.expressions`
(parsed into an allow-list, never evaluated as Python). The spec is written as YAML, exported as
JSON Schema, and every problem of a refused spec is listed at once.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from datetime import date, datetime
from itertools import product
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedsynth.expressions import Expression, ExpressionError, parse
from fedsynth.schema import (
    BooleanColumn,
    CategoricalColumn,
    Column,
    DatetimeColumn,
    IdentifierColumn,
    NumericalColumn,
    PrivacyRole,
    TableSchema,
)
from fedsynth.simulation.distributions import Distribution
from fedsynth.yaml12 import Yaml12Dumper, load_yaml

SIMULATION_FORMAT_VERSION = 1
PROBABILITY_TOLERANCE = 1e-6


class SimulationSpecError(ValueError):
    """A simulation spec that cannot be used; the message names the file and every problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Missingness(_Model):
    """Cells blanked after the whole row is drawn: a share `rate`, only where `when` holds."""

    rate: float = Field(ge=0, le=1, description="Share of (eligible) cells left empty.")
    when: str | None = Field(
        None, max_length=2000, description="Expression; only rows where it holds may be blanked."
    )


def _missing_shorthand(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"rate": value}
    return value


class VariableBase(_Model, ABC):
    """What every variable has: a name, a privacy role, and optional missingness."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str | None = None
    role: PrivacyRole = PrivacyRole.OTHER
    missing: Missingness | None = Field(
        None, description="Missingness: a rate, or {rate, when} for missing-at-random."
    )

    @field_validator("missing", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _missing_shorthand(value)

    def expressions(self) -> dict[str, str]:
        """Every expression of this variable by where it appears (for parsing and errors)."""
        found = {}
        if self.missing is not None and self.missing.when is not None:
            found["missing.when"] = self.missing.when
        return found

    def parents(self) -> set[str]:
        """Variables that must be drawn before this one (missingness is applied last)."""
        return set()

    @abstractmethod
    def column(self) -> Column:
        """The schema column holding this variable's values."""


class ProbabilityRow(_Model):
    """One row of a conditional table: the parents' values and the probabilities given them."""

    when: dict[str, str] = Field(min_length=1)
    probabilities: dict[str, float] = Field(min_length=1)

    @field_validator("when", mode="before")
    @classmethod
    def _text_values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {value_text(k): value_text(v) for k, v in value.items()}
        return value

    @field_validator("probabilities", mode="before")
    @classmethod
    def _text_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {value_text(k): v for k, v in value.items()}
        return value


class CategoricalVariable(VariableBase):
    """A category: fixed `probabilities`, or a conditional table over the `given` variables."""

    type: Literal["categorical"] = "categorical"
    categories: list[str] | None = Field(
        None, description="Domain in order; default: the categories the probabilities name."
    )
    probabilities: dict[str, float] | None = None
    given: list[str] = Field(default_factory=list, description="Parent variables of the table.")
    table: list[ProbabilityRow] = Field(default_factory=list)
    otherwise: dict[str, float] | None = Field(
        None, description="Probabilities for parent combinations the table does not list."
    )

    @field_validator("probabilities", "otherwise", mode="before")
    @classmethod
    def _text_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {value_text(k): v for k, v in value.items()}
        return value

    @field_validator("categories", mode="before")
    @classmethod
    def _text_items(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [value_text(v) for v in value]
        return value

    def domain(self) -> list[str]:
        if self.categories is not None:
            return list(self.categories)
        seen: dict[str, None] = {}
        for probabilities in self.distributions():
            seen.update(dict.fromkeys(probabilities))
        return list(seen)

    def distributions(self) -> list[dict[str, float]]:
        rows = [r.probabilities for r in self.table]
        rows += [p for p in (self.probabilities, self.otherwise) if p is not None]
        return rows

    def parents(self) -> set[str]:
        return set(self.given)

    def column(self) -> Column:
        return CategoricalColumn(
            name=self.name,
            domain=self.domain(),
            nullable=self.missing is not None,
            role=self.role,
            description=self.description,
        )


class BooleanVariable(VariableBase):
    """Yes/no: a fixed `probability` of true, or a logistic equation `logit` (log-odds of true)."""

    type: Literal["boolean"] = "boolean"
    probability: float | None = Field(None, ge=0, le=1)
    logit: str | None = Field(None, max_length=2000, description="Log-odds of true.")

    def expressions(self) -> dict[str, str]:
        found = super().expressions()
        if self.logit is not None:
            found["logit"] = self.logit
        return found

    def parents(self) -> set[str]:
        return _expression_columns(self.logit)

    def column(self) -> Column:
        return BooleanColumn(
            name=self.name,
            nullable=self.missing is not None,
            role=self.role,
            description=self.description,
        )


class Bounded(_Model):
    """What happens to values outside [min, max]: redraw the noise (truncate) or clip."""

    min: float | None = Field(None, allow_inf_nan=False)
    max: float | None = Field(None, allow_inf_nan=False)
    outside: Literal["resample", "clip"] = "resample"

    @model_validator(mode="after")
    def _ordered(self) -> Bounded:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class NumberSource(_Model):
    """A number drawn from a `distribution`, or an `equation` of earlier variables plus `noise`."""

    distribution: Distribution | None = None
    equation: str | None = Field(None, max_length=2000)
    noise: Distribution | None = Field(None, description="Added to the equation's value.")

    def expressions(self, prefix: str = "") -> dict[str, str]:
        return {f"{prefix}equation": self.equation} if self.equation is not None else {}

    def problems(self) -> list[str]:
        if (self.distribution is None) == (self.equation is None):
            return ["give exactly one of 'distribution' or 'equation'"]
        if self.noise is not None and self.equation is None:
            return ["'noise' is added to an 'equation'; with a 'distribution' leave it out"]
        return []


class NumericalVariable(VariableBase, NumberSource):
    """A number (int or float) from a distribution or a structural equation, within bounds."""

    type: Literal["numerical"] = "numerical"
    dtype: Literal["int", "float"] = "float"
    decimals: int | None = Field(None, ge=0, le=15)
    bounds: Bounded | None = None

    def expressions(self) -> dict[str, str]:
        return {**VariableBase.expressions(self), **NumberSource.expressions(self)}

    def parents(self) -> set[str]:
        return _expression_columns(self.equation)

    def column(self) -> Column:
        bounds = self.bounds or Bounded()
        return NumericalColumn(
            name=self.name,
            dtype=self.dtype,
            min=bounds.min,
            max=bounds.max,
            decimals=self.decimals,
            nullable=self.missing is not None,
            role=self.role,
            description=self.description,
        )


class DateVariable(VariableBase):
    """A date: `origin` (an ISO date or an earlier date variable) plus `days` (a number)."""

    type: Literal["date"] = "date"
    origin: str = Field(min_length=1, description="ISO date, or the name of a date variable.")
    days: NumberSource = Field(description="Days after the origin (negative: before).")
    min: date | None = None
    max: date | None = None
    outside: Literal["resample", "clip"] = "resample"

    def expressions(self) -> dict[str, str]:
        return {**super().expressions(), **self.days.expressions("days.")}

    def origin_date(self) -> date | None:
        """The origin as a date, or None when it names a variable."""
        try:
            return date.fromisoformat(self.origin)
        except ValueError:
            return None

    def parents(self) -> set[str]:
        named = set() if self.origin_date() is not None else {self.origin}
        return named | _expression_columns(self.days.equation)

    def column(self) -> Column:
        return DatetimeColumn(
            name=self.name,
            min=None if self.min is None else _midnight(self.min),
            max=None if self.max is None else _midnight(self.max),
            nullable=self.missing is not None,
            role=self.role,
            description=self.description,
        )


class NameVariable(VariableBase):
    """A person's first, middle or last name from the bundled name lists (first names by sex)."""

    type: Literal["name"] = "name"
    part: Literal["first", "middle", "last"]
    sex: str | None = Field(None, description="Variable holding the sex (first/middle names).")
    female: list[str] = Field(
        default_factory=lambda: ["F", "female"], description="Values of `sex` meaning female."
    )
    role: PrivacyRole = PrivacyRole.DIRECT_IDENTIFIER

    def parents(self) -> set[str]:
        return {self.sex} if self.sex else set()

    def column(self) -> Column:
        return IdentifierColumn(
            name=self.name,
            nullable=self.missing is not None,
            role=self.role,
            description=self.description,
        )


class SequenceVariable(VariableBase):
    """Record numbers: `prefix` + a zero-padded running number from `start`."""

    type: Literal["sequence"] = "sequence"
    prefix: str = ""
    start: int = Field(1, ge=0)
    width: int = Field(6, ge=1, le=18)
    role: PrivacyRole = PrivacyRole.DIRECT_IDENTIFIER

    def column(self) -> Column:
        return IdentifierColumn(
            name=self.name,
            nullable=self.missing is not None,
            role=self.role,
            description=self.description,
        )


Variable = Annotated[
    CategoricalVariable
    | BooleanVariable
    | NumericalVariable
    | DateVariable
    | NameVariable
    | SequenceVariable,
    Field(discriminator="type"),
]


class SimulationSpec(_Model):
    """A table declared from knowledge: variables in any order, drawn parents first."""

    format_version: Literal[1] = SIMULATION_FORMAT_VERSION
    name: str = Field(min_length=1)
    description: str | None = None
    variables: list[Variable] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> SimulationSpec:
        problems = _problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def variable(self, name: str) -> Variable:
        """The variable called `name`; KeyError naming the known ones otherwise."""
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(f"no variable {name!r}; variables: {[v.name for v in self.variables]}")

    def order(self) -> list[Variable]:
        """Variables in drawing order: every variable after its parents, else as declared."""
        order, cycle = _topological(self.variables)
        if cycle:
            raise SimulationSpecError(f"variables depend on each other in a cycle: {cycle}")
        return order

    def table_schema(self) -> TableSchema:
        """The schema of the simulated table (kinds, domains, bounds, privacy roles)."""
        return TableSchema(
            name=self.name,
            description=self.description,
            columns=[v.column() for v in self.variables],
        )

    def expressions(self) -> dict[tuple[str, str], Expression]:
        """Every parsed expression, keyed by (variable, where)."""
        return {
            (v.name, where): parse(text)
            for v in self.variables
            for where, text in v.expressions().items()
        }

    def to_yaml(self) -> str:
        """The spec as YAML, with only the fields its author set."""
        data = self.model_dump(mode="json", exclude_unset=True, by_alias=True)
        return yaml.dump(data, Dumper=Yaml12Dumper, sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<string>") -> SimulationSpec:
        try:
            data = load_yaml(text)
        except yaml.YAMLError as exc:
            raise SimulationSpecError(f"{source}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> SimulationSpec:
        if not isinstance(data, dict):
            raise SimulationSpecError(
                f"{source}: a simulation spec is a mapping with 'name' and 'variables'"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SimulationSpecError(_describe(source, exc, data)) from exc

    @classmethod
    def load(cls, path: str | Path) -> SimulationSpec:
        """Read a simulation spec from a YAML (or JSON) file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise SimulationSpecError(f"{path}: simulation spec file not found") from exc
        return cls.from_yaml(text, source=str(path))

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON Schema of the simulation spec document, for editors and validators."""
        return cls.model_json_schema(by_alias=True)

    def to_json(self) -> str:
        """The spec as JSON (how it travels between parties)."""
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=2)


def _problems(spec: SimulationSpec) -> list[str]:
    """Every cross-variable problem: names, references, expressions, tables, cycles."""
    problems: list[str] = []
    names = [v.name for v in spec.variables]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"variable names must be unique; repeated: {repeated}")
    by_name = {v.name: v for v in spec.variables}
    for v in spec.variables:
        where = f"variable {v.name!r}"
        for part, text in v.expressions().items():
            try:
                expression = parse(text)
            except ExpressionError as exc:
                problems.append(f"{where}: {part}: {exc}")
                continue
            unknown = sorted(expression.columns - set(by_name))
            if unknown:
                problems.append(f"{where}: {part} reads unknown variables {unknown}")
        problems += [f"{where}: {p}" for p in _own_problems(v, by_name)]
    if not problems:
        _, cycle = _topological(spec.variables)
        if cycle:
            problems.append(f"variables depend on each other in a cycle: {cycle}")
    return problems


def _own_problems(v: VariableBase, by_name: dict[str, VariableBase]) -> list[str]:
    if isinstance(v, CategoricalVariable):
        return _categorical_problems(v, by_name)
    if isinstance(v, BooleanVariable) and (v.probability is None) == (v.logit is None):
        return ["give exactly one of 'probability' or 'logit'"]
    if isinstance(v, NumericalVariable):
        return v.problems()
    if isinstance(v, DateVariable):
        problems = [f"days: {p}" for p in v.days.problems()]
        if v.origin_date() is None and v.origin in by_name:
            if not isinstance(by_name[v.origin], DateVariable):
                problems.append(f"origin {v.origin!r} is not a date variable")
        elif v.origin_date() is None:
            problems.append(
                f"origin {v.origin!r} is neither an ISO date (YYYY-MM-DD) nor a variable"
            )
        if v.min is not None and v.max is not None and v.min > v.max:
            problems.append(f"min {v.min} is after max {v.max}")
        return problems
    if isinstance(v, NameVariable) and v.sex is not None and v.sex not in by_name:
        return [f"sex variable {v.sex!r} does not exist"]
    return []


def _categorical_problems(v: CategoricalVariable, by_name: dict[str, VariableBase]) -> list[str]:
    problems: list[str] = []
    if v.probabilities is not None and (v.given or v.table or v.otherwise):
        problems.append("give either 'probabilities' or 'given' with 'table', not both")
    if v.probabilities is None and not v.given:
        problems.append("give 'probabilities', or 'given' parents with a 'table'")
    domain = v.domain()
    repeated = sorted({c for c in domain if domain.count(c) > 1})
    if repeated:
        problems.append(f"categories lists {repeated} more than once")
    for i, probabilities in enumerate(v.distributions()):
        problems += [f"probabilities #{i + 1}: {p}" for p in _probability_problems(probabilities)]
        outside = sorted(set(probabilities) - set(domain))
        if outside:
            problems.append(f"probabilities name {outside}, which are not in 'categories'")
    if not v.given:
        return problems
    parent_domains: list[list[str]] = []
    for parent in v.given:
        variable = by_name.get(parent)
        if variable is None:
            problems.append(f"given variable {parent!r} does not exist")
        elif isinstance(variable, CategoricalVariable):
            parent_domains.append(variable.domain())
        elif isinstance(variable, BooleanVariable):
            parent_domains.append(["false", "true"])
        else:
            problems.append(f"given variable {parent!r} must be categorical or boolean")
    if problems:
        return problems
    seen: set[tuple[str, ...]] = set()
    for i, row in enumerate(v.table):
        if set(row.when) != set(v.given):
            problems.append(f"table row #{i + 1}: 'when' must name exactly {v.given}")
            continue
        key = tuple(row.when[p] for p in v.given)
        for parent, value, dom in zip(v.given, key, parent_domains, strict=True):
            if value not in dom:
                problems.append(f"table row #{i + 1}: {parent}={value!r} is not one of {dom}")
        if key in seen:
            problems.append(f"table row #{i + 1}: repeats the parent values {dict(row.when)}")
        seen.add(key)
    uncovered = [c for c in product(*parent_domains) if c not in seen]
    if uncovered and v.otherwise is None:
        shown = [dict(zip(v.given, c, strict=True)) for c in uncovered[:5]]
        problems.append(
            f"table does not cover {len(uncovered)} parent combination(s), e.g. {shown}; "
            "add rows or an 'otherwise'"
        )
    return problems


def _probability_problems(probabilities: dict[str, float]) -> list[str]:
    negative = sorted(k for k, p in probabilities.items() if not p >= 0 or math.isinf(p))
    if negative:
        return [f"probabilities of {negative} must be finite and not negative"]
    total = sum(probabilities.values())
    if abs(total - 1.0) > PROBABILITY_TOLERANCE:
        return [f"probabilities sum to {total:g}; they must sum to 1"]
    return []


def _topological(variables: list[Variable]) -> tuple[list[Variable], list[str]]:
    """Declared order, each variable moved after its parents; the cycle's names if there is one."""
    by_name = {v.name: v for v in variables}
    done: dict[str, None] = {}
    visiting: list[str] = []

    def visit(v: Variable) -> list[str]:
        if v.name in done:
            return []
        if v.name in visiting:
            return [*visiting[visiting.index(v.name) :], v.name]
        visiting.append(v.name)
        for parent in sorted(v.parents()):
            if parent in by_name:
                cycle = visit(by_name[parent])
                if cycle:
                    return cycle
        visiting.pop()
        done[v.name] = None
        return []

    for v in variables:
        cycle = visit(v)
        if cycle:
            return [], cycle
    return [by_name[n] for n in done], []


def _expression_columns(text: str | None) -> set[str]:
    if text is None:
        return set()
    try:
        return parse(text).columns
    except ExpressionError:
        return set()


def _describe(source: str, exc: ValidationError, data: dict[str, Any]) -> str:
    lines: list[str] = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = _where(loc, data)
        message = err["msg"].removeprefix("Value error, ")
        prefix = f"{where}: " if loc else ""
        lines += [f"  - {prefix}{p}" for p in message.split("\n")]
    return "\n".join([f"{source}: {len(lines)} problem(s) in the simulation spec:", *lines])


def _where(loc: list[Any], data: dict[str, Any]) -> str:
    """`variables[2] (weight).noise.sd` rather than pydantic's `variables.2.numerical.noise...`."""
    if not loc:
        return "(top level)"
    if loc[0] == "variables" and len(loc) > 1 and isinstance(loc[1], int):
        index = loc[1]
        items = data.get("variables")
        name = None
        if isinstance(items, list) and index < len(items) and isinstance(items[index], dict):
            name = items[index].get("name")
        head = f"variables[{index}]" + (f" ({name})" if name else "")
        rest = [str(p) for p in loc[2:]]
        if rest and rest[0] in _TYPES:
            rest = rest[1:]
        return ".".join([head, *rest])
    return ".".join(str(p) for p in loc)


_TYPES = {"categorical", "boolean", "numerical", "date", "name", "sequence"}


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def value_text(value: Any) -> str:
    """A YAML scalar as the text a category or code is named by (True -> 'true', 1.0 -> '1')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
