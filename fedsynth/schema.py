"""The common table schema every party agrees on: columns, their kinds, bounds and privacy roles.

A `TableSchema` is written by a person as YAML (usually starting from `fedsynth schema infer`),
carried on the wire as JSON, and is public: synthesizers derive bins from its bounds and domains,
so nothing in it may come from a single record.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedsynth.documents import describe_problems
from fedsynth.files import atomic_write_text
from fedsynth.yaml12 import Yaml12Dumper, load_yaml

SCHEMA_FORMAT_VERSION = 1


class ColumnKind(StrEnum):
    """What a column holds, which decides how it is parsed, validated and modelled."""

    NUMERICAL = "numerical"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    IDENTIFIER = "identifier"
    TEXT = "text"


class PrivacyRole(StrEnum):
    """How a column matters for disclosure risk (drives linkage, audits and modelling)."""

    DIRECT_IDENTIFIER = "direct_identifier"
    QUASI_IDENTIFIER = "quasi_identifier"
    SENSITIVE = "sensitive"
    OTHER = "other"


DEFAULT_TRUE_VALUES = ("true", "t", "yes", "y", "1")
DEFAULT_FALSE_VALUES = ("false", "f", "no", "n", "0")


class _ColumnBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Column name as it appears in the data header.")
    nullable: bool = Field(True, description="Whether an empty cell is allowed.")
    role: PrivacyRole = Field(PrivacyRole.OTHER, description="Privacy role of the column.")
    description: str | None = Field(None, description="Free-form note for people.")

    @property
    def modelled(self) -> bool:
        """Whether synthesizers model this column (identifiers and free text are never modelled)."""
        return True

    @model_validator(mode="after")
    def _direct_identifiers_are_identifiers(self) -> _ColumnBase:
        if self.role is PrivacyRole.DIRECT_IDENTIFIER and not isinstance(self, IdentifierColumn):
            raise ValueError(
                f"column {self.name!r}: role direct_identifier requires kind 'identifier' "
                "(direct identifiers are never modelled); change its kind or its role"
            )
        return self


class NumericalColumn(_ColumnBase):
    """A number: `dtype` int or float, optional inclusive bounds, output decimals and unit."""

    kind: Literal["numerical"] = "numerical"
    dtype: Literal["int", "float"] = "float"
    min: float | None = Field(None, allow_inf_nan=False, description="Inclusive lower bound.")
    max: float | None = Field(None, allow_inf_nan=False, description="Inclusive upper bound.")
    decimals: int | None = Field(None, ge=0, le=15, description="Decimals kept on output.")
    unit: str | None = Field(
        None,
        min_length=1,
        description="Unit of measure, e.g. 'kg' or 'mmol/L': shown to analysts, and a prep "
        "spec's unit conversion into this column must name it as its target.",
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> NumericalColumn:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name!r}: min {self.min} is above max {self.max}")
        return self


class CategoricalColumn(_ColumnBase):
    """A value from a declared, finite domain (codes are kept as strings)."""

    kind: Literal["categorical"] = "categorical"
    domain: list[str] = Field(min_length=1, description="Every allowed value, as text.")

    @field_validator("domain", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_scalar_text(v) for v in value]
        return value

    @field_validator("domain")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        dupes = sorted({v for v in value if v in seen or seen.add(v)})
        if dupes:
            raise ValueError(f"domain lists values more than once: {dupes}")
        return value


class BooleanColumn(_ColumnBase):
    """True or false, spelled in any of the declared tokens (compared case-insensitively)."""

    kind: Literal["boolean"] = "boolean"
    true_values: list[str] = Field(default_factory=lambda: list(DEFAULT_TRUE_VALUES))
    false_values: list[str] = Field(default_factory=lambda: list(DEFAULT_FALSE_VALUES))

    @model_validator(mode="after")
    def _disjoint(self) -> BooleanColumn:
        clash = {v.lower() for v in self.true_values} & {v.lower() for v in self.false_values}
        if clash:
            raise ValueError(f"column {self.name!r}: {sorted(clash)} are both true and false")
        return self


TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%f", "%p", "%c", "%X", "%T", "%R", "%s", "%z")


class DatetimeColumn(_ColumnBase):
    """A date or timestamp; `format` is a strptime pattern, or None for ISO 8601."""

    kind: Literal["datetime"] = "datetime"
    format: str | None = Field(None, description="strptime format, e.g. '%d/%m/%Y'; None = ISO.")
    min: datetime | None = Field(None, description="Inclusive lower bound.")
    max: datetime | None = Field(None, description="Inclusive upper bound.")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> DatetimeColumn:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name!r}: min {self.min} is after max {self.max}")
        return self

    @property
    def whole_days(self) -> bool:
        """Whether the declared format holds a date without a time of day (e.g. '%Y-%m-%d'):
        models that may not learn it from the rows (DP ones) then give whole days."""
        return self.format is not None and not any(d in self.format for d in TIME_DIRECTIVES)


class IdentifierColumn(_ColumnBase):
    """A direct identifier (name, email, record number): kept for linkage, never modelled."""

    kind: Literal["identifier"] = "identifier"
    role: PrivacyRole = PrivacyRole.DIRECT_IDENTIFIER

    @property
    def modelled(self) -> bool:
        return False


class TextColumn(_ColumnBase):
    """Free text: validated as text, not modelled unless a later model asks for it."""

    kind: Literal["text"] = "text"

    @property
    def modelled(self) -> bool:
        return False


Column = Annotated[
    NumericalColumn
    | CategoricalColumn
    | BooleanColumn
    | DatetimeColumn
    | IdentifierColumn
    | TextColumn,
    Field(discriminator="kind"),
]


class TableSchema(BaseModel):
    """The common schema of one table: an ordered list of uniquely named columns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = SCHEMA_FORMAT_VERSION
    name: str = Field(min_length=1)
    description: str | None = None
    columns: list[Column] = Field(min_length=1)

    @field_validator("columns")
    @classmethod
    def _unique_names(cls, columns: list[Column]) -> list[Column]:
        seen: set[str] = set()
        dupes = sorted({c.name for c in columns if c.name in seen or seen.add(c.name)})
        if dupes:
            raise ValueError(f"column names must be unique; repeated: {dupes}")
        return columns

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """The column called `name`; KeyError naming the known columns otherwise."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"no column {name!r} in schema {self.name!r}; columns: {self.names}")

    def by_role(self, role: PrivacyRole) -> list[Column]:
        return [c for c in self.columns if c.role is role]

    @property
    def modelled_columns(self) -> list[Column]:
        """Columns a synthesizer models: everything but identifiers and free text."""
        return [c for c in self.columns if c.modelled]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible mapping, defaults left out for readability."""
        data = {"format_version": self.format_version}
        data.update(self.model_dump(mode="json", exclude_defaults=True))
        data["columns"] = [
            {"name": c.name, "kind": c.kind, **c.model_dump(mode="json", exclude_defaults=True)}
            for c in self.columns
        ]
        return data

    def to_yaml(self) -> str:
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> None:
        """Write as YAML (or JSON when the name ends in .json), atomically."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        else:
            text = self.to_yaml()
        atomic_write_text(path, text)

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<string>") -> TableSchema:
        try:
            data = load_yaml(text)
        except yaml.YAMLError as exc:
            raise SchemaError(f"{source}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> TableSchema:
        if not isinstance(data, dict):
            raise SchemaError(f"{source}: a schema is a mapping with 'name' and 'columns'")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SchemaError(describe_problems(source, exc, "schema", cls, data)) from exc

    @classmethod
    def load(cls, path: str | Path) -> TableSchema:
        """Read a schema from YAML, or from JSON when the name ends in .json."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise SchemaError(f"{path}: schema file not found") from exc
        if path.suffix.lower() != ".json":
            return cls.from_yaml(text, source=str(path))
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{path}: not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON Schema of the schema document, for editors and other-language tooling."""
        return cls.model_json_schema()


class _Dumper(Yaml12Dumper):
    """Safe YAML dumper that double-quotes strings holding characters YAML reads as line breaks."""


def _represent_str(dumper: Yaml12Dumper, value: str) -> yaml.ScalarNode:
    style = '"' if any(c in value for c in _YAML_LINE_BREAKS) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_YAML_LINE_BREAKS = ("\x85", "\u2028", "\u2029")
_Dumper.add_representer(str, _represent_str)


class SchemaError(ValueError):
    """A schema document that cannot be used; the message names the file and every problem."""


def _scalar_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value
