"""`PrepSpec`: how one source's own columns, codes, units and dates map onto the common schema.

A person writes one spec per source as YAML; it travels as JSON and is exported as JSON Schema.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedsynth.documents import describe_problems
from fedsynth.expressions import ExpressionError, parse
from fedsynth.schema import Column, NumericalColumn
from fedsynth.yaml12 import load_yaml

PREP_FORMAT_VERSION = 1
DEFAULT_MISSING_TOKENS = ("", "NA", "N/A", "NULL", "null", "?", "-999")
DEFAULT_SENTINELS = {t: float(t) for t in DEFAULT_MISSING_TOKENS if t.lstrip("-").isdigit()}
"""The default tokens that are numbers: a value, not a token, where a column's bounds admit them."""


class PrepSpecError(ValueError):
    """A prep spec that cannot be used; the message names the file and every problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ValueType(StrEnum):
    """The type a source column is parsed into when the common schema does not say."""

    TEXT = "text"
    NUMBER = "number"
    INTEGER = "integer"
    DATE = "date"
    BOOLEAN = "boolean"


class UnitConversion(_Model):
    """A declared linear transform `value * factor + offset`, named by its units.

    Known pairs (`lb -> kg`, `mg/dL -> mmol/L` for a named substance, ...) need no factor;
    any other pair must state `factor` (and `offset` if not 0).
    """

    from_unit: str = Field(alias="from", min_length=1)
    to_unit: str = Field(alias="to", min_length=1)
    substance: str | None = Field(None, description="Analyte for concentration units.")
    factor: float | None = Field(None, allow_inf_nan=False)
    offset: float = Field(0.0, allow_inf_nan=False)


class RangeAction(StrEnum):
    """What a range rule does with a value outside [min, max]."""

    QUARANTINE = "quarantine"
    NULLIFY = "nullify"
    CLIP = "clip"


class RangeRule(_Model):
    """Inclusive bounds on a numeric column (after unit conversion) and what to do outside."""

    min: float | None = Field(None, allow_inf_nan=False)
    max: float | None = Field(None, allow_inf_nan=False)
    action: RangeAction = RangeAction.QUARANTINE

    @model_validator(mode="after")
    def _ordered(self) -> RangeRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min} is above max {self.max}")
        return self


class ColumnSpec(_Model):
    """Standardization and cleansing of one column, named as in the common schema."""

    type: ValueType | None = Field(
        None, description="Parse type for columns not in the common schema (default: text)."
    )
    trim: bool = True
    case: Literal["lower", "upper"] | None = None
    missing: list[str] = Field(
        default_factory=list,
        description="Extra tokens meaning null (compared after trimming, before case folding).",
    )
    values: dict[str, str | None] = Field(
        default_factory=dict, description="Value map applied after trim/case, e.g. {'1': 'male'}."
    )
    unit: UnitConversion | None = None
    date_formats: list[str] = Field(
        default_factory=list, description="strptime formats tried in order; empty = ISO 8601."
    )
    decimal_comma: bool = Field(False, description="Numbers written with ',' as decimal mark.")
    range: RangeRule | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _stringify_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_text(k): (None if v is None else _text(v)) for k, v in value.items()}
        return value

    @field_validator("missing", mode="before")
    @classmethod
    def _stringify_missing(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_text(v) for v in value]
        return value


class Derivation(_Model):
    """A column computed from others by an expression of the safe expression language."""

    name: str = Field(min_length=1)
    expr: str = Field(min_length=1, max_length=2000)

    @field_validator("expr")
    @classmethod
    def _parses(cls, value: str) -> str:
        """Checked where the spec is written or submitted, not first at a site's task."""
        try:
            parse(value)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
        return value


class DedupSpec(_Model):
    """De-duplication: exact (all columns) when `keys` is empty, else on the key columns."""

    keys: list[str] = Field(default_factory=list)
    keep: Literal["first", "last"] = "first"


class Normalization(StrEnum):
    """One normalization step applied to an identifier before it is encoded."""

    TRIM = "trim"
    LOWER = "lower"
    UPPER = "upper"
    STRIP_ACCENTS = "strip_accents"
    LETTERS_ONLY = "letters_only"
    DIGITS_ONLY = "digits_only"
    ALNUM_ONLY = "alnum_only"
    COLLAPSE_SPACES = "collapse_spaces"
    REMOVE_SPACES = "remove_spaces"


DEFAULT_NORMALIZATION = (
    Normalization.STRIP_ACCENTS,
    Normalization.LOWER,
    Normalization.COLLAPSE_SPACES,
    Normalization.TRIM,
)


class LinkageField(_Model):
    """An identifier used for linkage: how it is normalized and how it is encoded."""

    column: str = Field(min_length=1)
    normalize: list[Normalization] = Field(default_factory=lambda: list(DEFAULT_NORMALIZATION))
    exact: bool = Field(False, description="Emit an HMAC token column `tok_<column>`.")
    bloom_hashes: int = Field(
        0, ge=0, le=100, description="Bits set per q-gram in the record's Bloom filter (0: none)."
    )
    group: str | None = Field(
        None,
        description="Fields sharing a group share q-gram space (e.g. name parts, so swaps match).",
    )


class BlockingPart(_Model):
    """One part of a blocking key: a linkage field, optionally reduced (Soundex, prefix, year)."""

    column: str = Field(min_length=1)
    transform: Literal["value", "soundex", "prefix2", "prefix3", "year", "year_month"] = "value"


class BlockingKey(_Model):
    """A keyed-hash blocking key `blk_<name>`; `sorted` makes it ignore the order of its parts."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_]+$")
    parts: list[BlockingPart] = Field(min_length=1)
    sorted: bool = False


class BloomSpec(_Model):
    """Size of the record-level Bloom filter and the q-gram length."""

    length: int = Field(1024, ge=64, le=8192, multiple_of=64)
    q: int = Field(2, ge=1, le=4)


class LinkageSpec(_Model):
    """Which columns are identifiers and how they become tokens; nothing else leaves."""

    fields: list[LinkageField] = Field(min_length=1)
    exact_key: list[str] = Field(
        default_factory=list, description="Fields hashed together into `tok_record`."
    )
    bloom: BloomSpec = Field(default_factory=BloomSpec)
    blocking: list[BlockingKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> LinkageSpec:
        known = {f.column for f in self.fields}
        if len(known) != len(self.fields):
            raise ValueError("linkage.fields lists a column more than once")
        used = set(self.exact_key) | {p.column for k in self.blocking for p in k.parts}
        unknown = sorted(used - known)
        if unknown:
            raise ValueError(f"linkage refers to {unknown}, which are not in linkage.fields")
        names = [k.name for k in self.blocking]
        if len(set(names)) != len(names):
            raise ValueError("linkage.blocking names must be unique")
        return self


class PrepSpec(_Model):
    """Everything needed to turn one source's raw table into rows of the common schema."""

    format_version: Literal[1] = PREP_FORMAT_VERSION
    source: str = Field(min_length=1, description="Name of the source (used in reports).")
    rename: dict[str, str] = Field(
        default_factory=dict, description="Source column -> common column."
    )
    drop: list[str] = Field(default_factory=list, description="Source columns dropped at once.")
    missing: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MISSING_TOKENS),
        description="Tokens meaning null in every column, compared after trimming and before "
        "case folding. Left unwritten, the defaults' -999 is kept as a value in a numerical "
        "column whose bounds admit it; write it here or under a column's 'missing' to null it.",
    )
    columns: dict[str, ColumnSpec] = Field(
        default_factory=dict, description="Per-column rules, keyed by common (renamed) name."
    )
    derive: list[Derivation] = Field(default_factory=list)
    dedup: DedupSpec | None = None
    linkage: LinkageSpec | None = None

    @field_validator("missing", mode="before")
    @classmethod
    def _stringify_missing(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_text(v) for v in value]
        return value

    def missing_tokens(self, column: Column | None) -> list[str]:
        """The spec-wide tokens meaning null in `column`.

        A default numeric sentinel (-999) is a real value in a numerical column whose declared
        bounds admit it, so it stays one unless the spec writes it under `missing` itself. A
        column with no declared bounds gives no such evidence and keeps the defaults.
        """
        if "missing" in self.model_fields_set or not isinstance(column, NumericalColumn):
            return list(self.missing)
        if column.min is None and column.max is None:
            return list(self.missing)
        low = -math.inf if column.min is None else column.min
        high = math.inf if column.max is None else column.max
        return [
            t
            for t in self.missing
            if not (t in DEFAULT_SENTINELS and low <= DEFAULT_SENTINELS[t] <= high)
        ]

    @model_validator(mode="after")
    def _rename_is_injective(self) -> PrepSpec:
        targets = list(self.rename.values())
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise ValueError(f"rename maps several source columns onto {dupes}")
        return self

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<string>") -> PrepSpec:
        try:
            data = load_yaml(text)
        except yaml.YAMLError as exc:
            raise PrepSpecError(f"{source}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> PrepSpec:
        if not isinstance(data, dict):
            raise PrepSpecError(f"{source}: a prep spec is a mapping with at least 'source'")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PrepSpecError(describe_problems(source, exc, "prep spec", cls, data)) from exc

    @classmethod
    def load(cls, path: str | Path) -> PrepSpec:
        """Read a prep spec from YAML or JSON."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise PrepSpecError(f"{path}: prep spec file not found") from exc
        return cls.from_yaml(text, source=str(path))

    def to_json(self) -> str:
        """The spec as JSON; `missing` is left out when the spec did not write it, so that the
        defaults keep meaning defaults (see `missing_tokens`) when it is read back."""
        unwritten = set() if "missing" in self.model_fields_set else {"missing"}
        return json.dumps(self.model_dump(mode="json", by_alias=True, exclude=unwritten), indent=2)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON Schema of the prep spec document, for editors and other-language tooling."""
        return cls.model_json_schema(by_alias=True)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
