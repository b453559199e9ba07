"""Validity: schema bounds, domains and nullability, and declared constraints, on every row.

Tables are checked with the same cell rules as `fedsynth.io` (`fedsynth.validation`), so a frame
built in memory and a file read from disk are judged alike. Invalid synthetic cells are counted
and then treated as missing by the other measures; invalid real cells are an error. A
synthesizer's declared constraints (ranges, derived columns, ...) become checks through
`declared_checks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from fedsynth.audit.report import ValidityCheck, ValidityReport
from fedsynth.io import ValidationReport, to_pandas
from fedsynth.schema import IdentifierColumn, TableSchema, TextColumn
from fedsynth.synth.constraints import ConstraintBase
from fedsynth.validation import Rule, describe, validate_column

ConstraintFunction = Callable[[pd.DataFrame], pd.Series]


@dataclass(frozen=True)
class ConstraintCheck:
    """A named row predicate: `check(df)` is a boolean Series, True where the row holds.

    A missing (NA) result counts as holding: a constraint cannot judge a value that is absent.
    Float columns hold NaN, which compares False, so a predicate that should accept missing
    values says so (e.g. ``df.low.isna() | (df.low < df.high)``).
    """

    name: str
    check: ConstraintFunction


def declared_checks(
    constraints: Iterable[ConstraintBase], schema: TableSchema, real: pd.DataFrame
) -> list[ConstraintCheck]:
    """Checks of a synthesizer's declared constraints, named by their labels.

    Each is bound to `schema`; one that learns (fixed combinations not listed) learns from the
    `real` training rows, as the synthesizer did.
    """
    checks = []
    for constraint in constraints:
        bound = constraint.bind(schema)
        if getattr(bound, "combinations", False) is None:
            bound = bound.learn(real)
        checks.append(ConstraintCheck(bound.label, _rows_holding(bound)))
    return checks


def _rows_holding(constraint: ConstraintBase) -> ConstraintFunction:
    def check(df: pd.DataFrame) -> pd.Series:
        return pd.Series(constraint.holds(df.copy()), index=df.index)

    return check


@dataclass(frozen=True)
class CheckedFrame:
    """A table typed per `fedsynth.frame`, with the rule each cell broke (0 = valid)."""

    frame: pd.DataFrame
    rules: dict[str, np.ndarray]

    @property
    def invalid_rows(self) -> np.ndarray:
        bad = np.zeros(len(self.frame), dtype=bool)
        for codes in self.rules.values():
            bad |= codes != 0
        return bad


def audited_schema(schema: TableSchema) -> tuple[TableSchema, list[str]]:
    """`schema` without its identifier columns (direct identifiers, record numbers, linkage
    tokens), and their names: they are never modelled or released, so neither side needs them."""
    left_out = [c.name for c in schema.columns if isinstance(c, IdentifierColumn)]
    if not left_out:
        return schema, []
    kept = [c for c in schema.columns if not isinstance(c, IdentifierColumn)]
    return schema.model_copy(update={"columns": kept}), left_out


def identifiers_note(names: list[str]) -> str:
    """The one-line note that identifier columns `names` were not audited."""
    return (
        f"identifier column(s) {names} left out of the audit on both sides: identifiers and "
        "linkage tokens are never modelled or released"
    )


def synthetic_schema(schema: TableSchema) -> TableSchema:
    """The schema a synthetic table is held to: its free-text columns may be empty.

    Synthesizers do not model text and leave it null, so a `nullable: false` text column
    would otherwise make every synthetic row invalid.
    """
    columns = [
        c.model_copy(update={"nullable": True}) if isinstance(c, TextColumn) else c
        for c in schema.columns
    ]
    return schema.model_copy(update={"columns": columns})


def rejection_summary(rejected: ValidationReport, schema: TableSchema, *, top: int = 3) -> str:
    """The `top` most frequent reasons rows were rejected on reading, for an error message."""
    counts = sorted(
        (
            (-n, column, rule)
            for column, rules in rejected.issues_by_column.items()
            for rule, n in rules.items()
        )
    )
    parts = []
    for negative, column, rule in counts[:top]:
        if column in schema.names and rule.upper() in Rule.__members__:
            reason = f"column {column!r}: {describe(Rule[rule.upper()], schema.column(column))}"
        else:
            reason = rule.replace("_", " ")
        parts.append(f"{reason} ({-negative} row(s))")
    return "; ".join(parts)


def check_frame(df: pd.DataFrame, schema: TableSchema, *, label: str) -> CheckedFrame:
    """Validate and type `df` against `schema`; invalid cells become missing."""
    missing = [n for n in schema.names if n not in df.columns]
    if missing:
        raise ValueError(
            f"{label}: lacks schema columns {missing}; "
            f"it has {list(df.columns)}. Fix: use the table the schema {schema.name!r} describes"
        )
    arrays = []
    rules = {}
    for column in schema.columns:
        result = validate_column(_arrow(df[column.name]), column)
        arrays.append(result.values)
        rules[column.name] = result.codes
    table = pa.Table.from_arrays(arrays, names=schema.names)
    frame = to_pandas(table, schema)
    frame.index = df.index
    return CheckedFrame(frame, rules)


def require_valid(checked: CheckedFrame, schema: TableSchema, *, label: str) -> pd.DataFrame:
    """The typed frame of a real table; ValueError naming the first bad cells otherwise."""
    problems = []
    for column in schema.columns:
        codes = checked.rules[column.name]
        bad = np.flatnonzero(codes)
        if len(bad):
            first = int(bad[0])
            reason = describe(Rule(int(codes[first])), column)
            problems.append(
                f"column {column.name!r}: {len(bad)} cell(s), e.g. row {first + 1}: {reason}"
            )
    if problems:
        raise ValueError(
            f"{label}: values break the schema:\n  "
            + "\n  ".join(problems)
            + "\nFix: read the table with fedsynth.io.read_table (bad rows go to quarantine)"
        )
    return checked.frame


def validity(
    checked: CheckedFrame,
    schema: TableSchema,
    constraints: Iterable[ConstraintCheck],
    *,
    rejected: ValidationReport | None = None,
) -> ValidityReport:
    """Rows breaking a schema rule or a constraint, plus rows rejected when the file was read."""
    counts: dict[str, int] = {}
    invalid = checked.invalid_rows
    for column in schema.columns:
        codes = checked.rules[column.name]
        for code in np.unique(codes[codes != 0]):
            counts[f"schema.{column.name}.{Rule(int(code)).label}"] = int((codes == code).sum())
    for constraint in constraints:
        broken = _broken(constraint, checked.frame)
        counts[f"constraint.{constraint.name}"] = int(broken.sum())
        invalid = invalid | broken
    rows = len(checked.frame)
    invalid_rows = int(invalid.sum())
    if rejected is not None:
        rows += rejected.rows_quarantined
        invalid_rows += rejected.rows_quarantined
        for column, by_rule in rejected.issues_by_column.items():
            for rule, n in by_rule.items():
                key = f"schema.{column}.{rule}"
                counts[key] = counts.get(key, 0) + n
    return ValidityReport(
        rows=rows,
        invalid_rows=invalid_rows,
        invalid_row_rate=invalid_rows / rows if rows else 0.0,
        checks=[ValidityCheck(name=k, violations=v) for k, v in sorted(counts.items())],
    )


def _broken(constraint: ConstraintCheck, frame: pd.DataFrame) -> np.ndarray:
    try:
        result = constraint.check(frame)
    except Exception as exc:
        raise ValueError(f"constraint {constraint.name!r} failed to evaluate: {exc}") from exc
    if not isinstance(result, pd.Series) or len(result) != len(frame):
        raise ValueError(
            f"constraint {constraint.name!r} must return a boolean Series with one value per row "
            f"({len(frame)}), got {type(result).__name__}"
        )
    holds = result.astype("boolean").fillna(True).to_numpy(dtype=bool)
    return ~holds


def _arrow(series: pd.Series) -> pa.Array:
    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        text = series.map(lambda v: None if pd.isna(v) else str(v))
        return pa.array(text, type=pa.string(), from_pandas=True)
