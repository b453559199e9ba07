"""`SourceSpec`: how one data holder records persons of a simulated population, as raw text.

Several sources drawn from one population describe the same people, each its own way: its own
selection of persons, column names, codes, units, date formats and missing-value token, and
errors in names and dates of birth as registries make them. The true person of every row is
kept apart, so record linkage can be scored against it.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fedsynth.documents import describe_problems
from fedsynth.prep.population import Corruption, corrupt
from fedsynth.simulation.spec import value_text
from fedsynth.yaml12 import load_yaml

_DATE_FORMAT = re.compile(r"^(?:%[Ymd]|[^%])+$")


class SourceSpecError(ValueError):
    """A source spec that cannot be used; names the file and every problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RenderedColumn(_Model):
    """One column of the source file, written from one population variable."""

    name: str = Field(min_length=1, description="Column name in the source file.")
    from_: str = Field(alias="from", min_length=1, description="Population variable.")
    values: dict[str, str] = Field(
        default_factory=dict, description="Source codes by population value, e.g. {M: '1'}."
    )
    scale: float = Field(1.0, allow_inf_nan=False, description="Unit change: value * scale.")
    offset: float = Field(0.0, allow_inf_nan=False, description="Added after scaling.")
    decimals: int | None = Field(None, ge=0, le=10, description="Decimals written.")
    date_format: str = Field(
        "%Y-%m-%d", description="How dates are written, from %Y, %m, %d and separators."
    )
    missing: float = Field(0.0, ge=0, le=1, description="Extra share of cells left empty.")

    @field_validator("values", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {value_text(k): value_text(v) for k, v in value.items()}
        return value

    @field_validator("date_format")
    @classmethod
    def _known_codes(cls, value: str) -> str:
        if not _DATE_FORMAT.match(value):
            raise ValueError(f"date_format {value!r} may use only %Y, %m, %d and separators")
        return value


class IdentityErrors(_Model):
    """Per-record chances of identifier errors, and which variables hold the identity."""

    typo: float = Field(0.0, ge=0, le=1, description="A typo in the first or last name.")
    swap_names: float = Field(0.0, ge=0, le=1, description="First and last name swapped.")
    drop_middle: float = Field(0.0, ge=0, le=1, description="Middle name left out.")
    date_typo: float = Field(0.0, ge=0, le=1, description="A wrong digit or day/month swap.")
    first_name: str = "first_name"
    middle_name: str | None = "middle_name"
    last_name: str = "last_name"
    birth_date: str = "birth_date"


class RecordNumber(_Model):
    """The source's own record number column: `prefix` + a zero-padded running number."""

    name: str = Field(min_length=1)
    prefix: str = ""
    width: int = Field(7, ge=1, le=18)


class SourceSpec(_Model):
    """One source of the demo federation: who it holds and how it writes them down."""

    source: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    share: float = Field(gt=0, le=1, description="Chance that a person is in this source.")
    record_number: RecordNumber | None = None
    columns: list[RenderedColumn] = Field(min_length=1)
    identity_errors: IdentityErrors | None = None
    missing_token: str = Field("", description="What the source writes for an empty cell.")

    @field_validator("columns")
    @classmethod
    def _unique(cls, columns: list[RenderedColumn]) -> list[RenderedColumn]:
        names = [c.name for c in columns]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"column names must be unique; repeated: {repeated}")
        return columns

    @classmethod
    def load(cls, path: str | Path) -> SourceSpec:
        """Read a source spec from YAML; every problem is listed."""
        path = Path(path)
        try:
            data = load_yaml(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SourceSpecError(f"{path}: source spec file not found") from exc
        except yaml.YAMLError as exc:
            raise SourceSpecError(f"{path}: not valid YAML: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SourceSpecError(
                describe_problems(str(path), exc, "source spec", cls, data)
            ) from exc


@dataclass(frozen=True)
class RenderedSource:
    """A source's raw table (all text) and the population row of each of its rows (the truth)."""

    table: pd.DataFrame
    persons: np.ndarray


def render(population: pd.DataFrame, spec: SourceSpec, *, seed: int = 0) -> RenderedSource:
    """The rows `spec` holds of `population`, written the source's way, in shuffled order."""
    used = {c.from_ for c in spec.columns}
    if spec.identity_errors is not None:
        e = spec.identity_errors
        used |= {e.first_name, e.last_name, e.birth_date} | ({e.middle_name} - {None})
    unknown = sorted(used - set(population.columns))
    if unknown:
        raise SourceSpecError(
            f"source {spec.source!r}: refers to {unknown}, which the population lacks; "
            f"population variables: {list(population.columns)}"
        )
    rng = np.random.default_rng([seed, zlib.crc32(spec.source.encode("utf-8"))])
    persons = np.flatnonzero(rng.random(len(population)) < spec.share)
    persons = persons[rng.permutation(len(persons))]
    people = population.iloc[persons].reset_index(drop=True)
    text = {name: _as_text(people[name]) for name in sorted(used)}
    if spec.identity_errors is not None:
        text.update(_with_errors(text, spec.identity_errors, int(rng.integers(2**31))))
    out: dict[str, pd.Series] = {}
    if spec.record_number is not None:
        r = spec.record_number
        out[r.name] = pd.Series([f"{r.prefix}{i:0{r.width}d}" for i in range(1, len(people) + 1)])
    for column in spec.columns:
        values = _write(people[column.from_], text[column.from_], column)
        blank = rng.random(len(values)) < column.missing
        out[column.name] = values.where(~blank & values.notna(), spec.missing_token)
    return RenderedSource(pd.DataFrame(out, dtype=object), persons)


def _as_text(series: pd.Series) -> pd.Series:
    """Population values as text: ISO dates, 'true'/'false', numbers as they are."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series.dt.strftime("%Y-%m-%d").astype(object).where(series.notna(), None)
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.map({True: "true", False: "false"}).astype(object).where(series.notna(), None)
    return (
        series.astype(object).where(series.notna(), None).map(lambda v: v if v is None else str(v))
    )


def _with_errors(text: dict[str, pd.Series], errors: IdentityErrors, seed: int) -> dict[str, Any]:
    """Names and birth dates with the errors registries make (via `fedsynth.prep.population`)."""
    n = len(next(iter(text.values())))
    middle = text[errors.middle_name] if errors.middle_name else pd.Series([None] * n)
    frame = pd.DataFrame(
        {
            "first_name": text[errors.first_name].fillna(""),
            "middle_name": middle.fillna(""),
            "last_name": text[errors.last_name].fillna(""),
            "birth_date": text[errors.birth_date],
        }
    )
    dated = frame["birth_date"].notna()
    chances = Corruption(
        typo=errors.typo,
        swap_names=errors.swap_names,
        drop_middle=errors.drop_middle,
        date_typo=errors.date_typo,
    )
    changed = frame.copy()
    changed.loc[dated] = corrupt(frame[dated].reset_index(drop=True), chances, seed=seed).set_axis(
        frame.index[dated]
    )
    out = {
        errors.first_name: changed["first_name"].replace("", None),
        errors.last_name: changed["last_name"].replace("", None),
        errors.birth_date: changed["birth_date"],
    }
    if errors.middle_name:
        out[errors.middle_name] = changed["middle_name"].replace("", None)
    return out


def _write(values: pd.Series, text: pd.Series, column: RenderedColumn) -> pd.Series:
    """One column as the source writes it: scaled numbers, formatted dates, mapped codes."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return text.map(lambda v: None if v is None else _format_date(v, column.date_format))
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = values.astype("float64") * column.scale + column.offset
        return numbers.map(lambda v: None if np.isnan(v) else _format_number(v, column.decimals))
    return text.map(lambda v: None if v is None else column.values.get(v, v))


def _format_date(iso: str, pattern: str) -> str:
    """Write an ISO date (possibly impossible, like a typo'd 29 February) in `pattern`."""
    year, month, day = iso.split("-")
    return pattern.replace("%Y", year).replace("%m", month).replace("%d", day)


def _format_number(value: float, decimals: int | None) -> str:
    if decimals is None:
        return repr(float(value))
    if decimals == 0:
        return str(round(value))
    return f"{value:.{decimals}f}"
