"""`run(df, spec, schema)`: a source's raw text table in, rows of the common schema out.

Order: harmonize (rename/drop) -> standardize text -> parse types -> convert units -> range
rules -> derive -> common-schema checks -> quarantine -> de-duplicate -> tokenize identifiers.
Rows that cannot be repaired go to quarantine with the reason of every offending cell, and so do
the rows `read_raw` could not read (blank, wrong field count), so
rows_in = rows_out + rows_quarantined + duplicates_removed always holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from fedsynth.expressions import ExpressionError
from fedsynth.frame import conform
from fedsynth.prep.cleanse import apply_range, duplicates, schema_violations
from fedsynth.prep.harmonize import check_plan, rename_and_drop
from fedsynth.prep.report import REDACTED, Ledger, PrepReport, QuarantineEntry
from fedsynth.prep.source import rejected_rows, source_rows
from fedsynth.prep.spec import ColumnSpec, PrepSpec, PrepSpecError, RangeAction, ValueType
from fedsynth.prep.standardize import (
    Parsed,
    clean_text,
    convert_units,
    parse_as,
    parse_booleans,
    parse_dates,
)
from fedsynth.prep.tokens import LinkageSecret, SecretError, token_columns, tokenize
from fedsynth.schema import (
    BooleanColumn,
    Column,
    DatetimeColumn,
    IdentifierColumn,
    NumericalColumn,
    PrivacyRole,
    TableSchema,
)

_NO_RULES = ColumnSpec()


@dataclass
class PrepResult:
    """The prepared rows, the report, and the quarantine entries (cells with reasons)."""

    prepared: pd.DataFrame
    report: PrepReport
    quarantine: list[QuarantineEntry]


def output_schema(schema: TableSchema, spec: PrepSpec) -> TableSchema:
    """The schema of prepared rows: the common schema without direct identifiers, plus tokens."""
    kept = [c for c in schema.columns if c.role is not PrivacyRole.DIRECT_IDENTIFIER]
    tokens = token_columns(spec.linkage) if spec.linkage else []
    extra = [
        IdentifierColumn(name=n, role=PrivacyRole.OTHER, description="linkage token")
        for n in tokens
    ]
    if not kept + extra:
        raise PrepSpecError(f"source {spec.source!r}: nothing would be left to output")
    return TableSchema(name=schema.name, description=schema.description, columns=kept + extra)


def run(
    df: pd.DataFrame,
    spec: PrepSpec,
    schema: TableSchema,
    *,
    secret: LinkageSecret | None = None,
) -> tuple[pd.DataFrame, PrepReport]:
    """Prepare `df` (a source's columns as text); see `prepare` for the quarantine entries."""
    result = prepare(df, spec, schema, secret=secret)
    return result.prepared, result.report


def prepare(
    df: pd.DataFrame,
    spec: PrepSpec,
    schema: TableSchema,
    *,
    secret: LinkageSecret | None = None,
) -> PrepResult:
    """Run the whole preparation of one source and keep what was quarantined and why."""
    if spec.linkage and secret is None:
        raise SecretError(
            f"source {spec.source!r}: the spec declares linkage fields, so a linkage secret is "
            "needed to tokenize them"
        )
    ledger = Ledger()
    rows = source_rows(df)
    unread = rejected_rows(df)
    positional = df.reset_index(drop=True)
    positional.attrs = {}  # pandas deep-copies attrs into every derived frame and series
    frame = rename_and_drop(positional, spec)
    derived = check_plan(list(frame.columns), spec, schema)
    identifiers = _identifier_columns(schema, spec)
    for entry in unread:
        shown = REDACTED if identifiers and entry.value else entry.value
        ledger.reject(replace(entry, value=shown))
    bad = pd.Series(False, index=frame.index)
    failed: dict[str, pd.Series] = {}
    typed: dict[str, pd.Series] = {}
    for name in frame.columns:
        column = _schema_column(schema, name)
        rules = spec.columns.get(name, _NO_RULES)
        values, failures = _standardize(frame[name], column, rules, spec, ledger)
        cells = pd.Series(False, index=frame.index)
        for f in failures:
            cells |= _reject(
                f.mask & ~cells,
                frame[name],
                rows,
                name,
                f.rule,
                f.reason,
                ledger,
                name in identifiers,
            )
        failed[name] = cells
        bad |= cells
        typed[name] = values
    work = pd.DataFrame(typed, index=frame.index)
    for name, expression in derived:
        try:
            work[name] = expression.evaluate(work)
        except ExpressionError as exc:
            raise PrepSpecError(f"source {spec.source!r}: derivation {name!r}: {exc}") from exc
        ledger.changed("derive", name, int(work[name].notna().sum()))
    _round_converted(work, schema, spec, ledger)
    for column in schema.columns:
        cells = failed.get(column.name, pd.Series(False, index=frame.index))
        # The quarantine shows a cell as the source wrote it, not as converted (600 lb, not
        # 272.155 kg); derived columns have only their computed value.
        written = frame[column.name] if column.name in frame.columns else work[column.name]
        for v in schema_violations(work[column.name], column):
            redact = column.name in identifiers
            cells |= _reject(
                v.mask & ~cells,
                written,
                rows,
                column.name,
                v.rule,
                v.reason,
                ledger,
                redact,
            )
        bad |= cells
    good = work[~bad]
    dropped = pd.Series(False, index=good.index)
    if spec.dedup is not None:
        subset = good[schema.names]
        dropped = duplicates(subset, spec.dedup)
        ledger.changed("dedup", ",".join(spec.dedup.keys) or "*", int(dropped.sum()))
    kept = good[~dropped]
    prepared = _release(kept, spec, schema, secret)
    report = PrepReport(
        source=spec.source,
        rows_in=len(df) + len(unread),
        rows_out=len(prepared),
        rows_quarantined=int(bad.sum()) + len(unread),
        duplicates_removed=int(dropped.sum()),
        rules=ledger.rule_counts(),
        dropped_columns=sorted(
            (set(df.columns) - set(spec.rename) - set(schema.names))
            | {c.name for c in schema.by_role(PrivacyRole.DIRECT_IDENTIFIER)}
        ),
        token_columns=token_columns(spec.linkage) if spec.linkage else [],
    )
    return PrepResult(prepared, report, ledger.entries)


def _round_converted(
    work: pd.DataFrame, schema: TableSchema, spec: PrepSpec, ledger: Ledger
) -> None:
    """Round numbers to the common schema's declared decimals, and unit-converted values of
    integer columns to whole numbers.

    Without it a converted source (168.91 cm where the schema keeps whole centimetres) would
    stand out from the others in every pooled model and audit, and an integer column fed
    through a conversion (inches to cm) would quarantine every row for its fraction.
    """
    for column in schema.columns:
        if not isinstance(column, NumericalColumn):
            continue
        converted = spec.columns.get(column.name, _NO_RULES).unit is not None
        decimals = 0 if column.dtype == "int" and converted else column.decimals
        if decimals is None:
            continue
        if column.name not in work or not pd.api.types.is_float_dtype(work[column.name].dtype):
            continue
        before = work[column.name]
        after = before.round(decimals)
        changed = int((after != before).sum() - (before.isna() & after.isna()).sum())
        if changed:
            work[column.name] = after
            ledger.changed("round", column.name, changed)


@dataclass(frozen=True)
class _Failure:
    """Cells of one source column that could not be repaired, and why."""

    rule: str
    reason: str
    mask: pd.Series


def _standardize(
    raw: pd.Series,
    column: Column | None,
    rules: ColumnSpec,
    spec: PrepSpec,
    ledger: Ledger,
) -> tuple[pd.Series, list[_Failure]]:
    steps = clean_text(raw, rules, spec.missing_tokens(column))
    for rule, (_, n) in steps.items():
        ledger.changed(rule, raw.name, n)
    text = steps["final"][0]
    parsed = _parse(text, column, rules)
    values = parsed.values
    failures = [_Failure("type", _type_reason(column, rules), parsed.failed)]
    if rules.unit is not None:
        if not pd.api.types.is_numeric_dtype(values.dtype):
            raise PrepSpecError(f"column {raw.name!r}: a unit conversion needs a number column")
        values = convert_units(values, rules.unit)
        ledger.changed("unit", raw.name, int(values.notna().sum()))
    if rules.range is not None:
        if not pd.api.types.is_numeric_dtype(values.dtype):
            raise PrepSpecError(f"column {raw.name!r}: a range rule needs a number column")
        values, outside = apply_range(values, rules.range)
        if rules.range.action is RangeAction.QUARANTINE:
            reason = f"outside the range [{rules.range.min}, {rules.range.max}]"
            failures.append(_Failure("range", reason, outside))
        else:
            ledger.changed(f"range_{rules.range.action.value}", raw.name, int(outside.sum()))
    return values, failures


def _parse(text: pd.Series, column: Column | None, rules: ColumnSpec) -> Parsed:
    if isinstance(column, NumericalColumn):
        # A source unit's value may have a fraction even where the common unit's does not.
        whole = column.dtype == "int" and rules.unit is None
        return parse_as(text, ValueType.INTEGER if whole else ValueType.NUMBER, rules)
    if isinstance(column, DatetimeColumn):
        formats = rules.date_formats or ([column.format] if column.format else [])
        return parse_dates(text, formats)
    if isinstance(column, BooleanColumn):
        return parse_booleans(text, column.true_values, column.false_values)
    return parse_as(text, rules.type or ValueType.TEXT, rules)


def _type_reason(column: Column | None, rules: ColumnSpec) -> str:
    if isinstance(column, DatetimeColumn) or rules.type is ValueType.DATE:
        formats = rules.date_formats or (
            [column.format] if isinstance(column, DatetimeColumn) and column.format else ["ISO"]
        )
        return (
            f"not a date in the formats {formats}, or no such day or time (e.g. 30 February); "
            "add its format to 'date_formats'"
        )
    if isinstance(column, BooleanColumn) or rules.type is ValueType.BOOLEAN:
        return "not a known true/false spelling; map it under 'values'"
    return "not a number; map or null it under 'values' or 'missing'"


def _reject(
    cells: pd.Series,
    shown: pd.Series,
    rows: np.ndarray,
    column: str,
    rule: str,
    reason: str,
    ledger: Ledger,
    redact: bool,
) -> pd.Series:
    mask = cells.fillna(False).astype(bool)
    for index in mask[mask].index:
        value = shown.loc[index]
        text = None if value is None or pd.isna(value) else str(value)
        ledger.reject(
            QuarantineEntry(
                source_row=int(rows[index]),
                column=column,
                value=REDACTED if redact and text is not None else text,
                rule=rule,
                reason=reason,
            )
        )
    return mask


def _schema_column(schema: TableSchema, name: str) -> Column | None:
    return next((c for c in schema.columns if c.name == name), None)


def _identifier_columns(schema: TableSchema, spec: PrepSpec) -> set[str]:
    names = {c.name for c in schema.by_role(PrivacyRole.DIRECT_IDENTIFIER)}
    if spec.linkage:
        names |= {f.column for f in spec.linkage.fields}
    return names


def _release(
    kept: pd.DataFrame, spec: PrepSpec, schema: TableSchema, secret: LinkageSecret | None
) -> pd.DataFrame:
    target = output_schema(schema, spec)
    out = kept.copy()
    if spec.linkage is not None and secret is not None:
        missing = sorted({f.column for f in spec.linkage.fields} - set(kept.columns))
        if missing:
            raise PrepSpecError(
                f"source {spec.source!r}: linkage fields {missing} are not columns of the source"
            )
        out = pd.concat([out, tokenize(kept, spec.linkage, secret)], axis=1)
    prepared = conform(out, target).reset_index(drop=True)
    clear = sorted(
        set(prepared.columns) & {c.name for c in schema.by_role(PrivacyRole.DIRECT_IDENTIFIER)}
    )
    if clear:
        raise PrepSpecError(f"refusing to output direct identifiers in the clear: {clear}")
    return prepared
