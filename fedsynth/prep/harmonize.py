"""Harmonization: rename a source's columns onto the common schema and drop the rest."""

from __future__ import annotations

import pandas as pd

from fedsynth.expressions import Expression, parse
from fedsynth.prep.spec import PrepSpec, PrepSpecError
from fedsynth.schema import TableSchema

TOKEN_PREFIXES = ("tok_", "blk_", "bf_")


def rename_and_drop(raw: pd.DataFrame, spec: PrepSpec) -> pd.DataFrame:
    """Apply the spec's `drop` and `rename`; a name the source lacks is a spec error."""
    absent = sorted((set(spec.drop) | set(spec.rename)) - set(raw.columns))
    if absent:
        raise PrepSpecError(
            f"source {spec.source!r}: spec names columns {absent} that the input lacks; "
            f"input columns: {list(raw.columns)}"
        )
    frame = raw.drop(columns=spec.drop).rename(columns=spec.rename)
    clashes = sorted(c for c in set(frame.columns) if list(frame.columns).count(c) > 1)
    if clashes:
        raise PrepSpecError(
            f"source {spec.source!r}: after renaming, columns {clashes} appear twice; "
            "rename or drop one of them"
        )
    return frame


def check_plan(
    columns: list[str], spec: PrepSpec, schema: TableSchema
) -> list[tuple[str, Expression]]:
    """Parse the derivations and check that every schema column will exist; return the parsed list.

    Raises PrepSpecError naming each schema column that neither the source nor a derivation
    provides, each derivation input that does not exist at its point in the order, each unit
    conversion into another unit than the schema's, and each de-duplication key that is not a
    common-schema column (rows are de-duplicated on those).
    """
    available = set(columns)
    derived: list[tuple[str, Expression]] = []
    for d in spec.derive:
        expression = parse(d.expr)
        unknown = sorted(expression.columns - available)
        if unknown:
            raise PrepSpecError(
                f"source {spec.source!r}: derivation {d.name!r} reads {unknown}, which do not "
                f"exist before it; available: {sorted(available)}"
            )
        derived.append((d.name, expression))
        available.add(d.name)
    missing = [n for n in schema.names if n not in available]
    if missing:
        raise PrepSpecError(
            f"source {spec.source!r}: no source column or derivation gives schema columns "
            f"{missing}; add them to 'rename' or 'derive'"
        )
    unknown_rules = sorted(set(spec.columns) - available)
    if unknown_rules:
        raise PrepSpecError(
            f"source {spec.source!r}: 'columns' has rules for {unknown_rules}, which do not "
            "exist; key rules by the common (renamed) column name"
        )
    _check_units(spec, schema)
    unknown_keys = [k for k in spec.dedup.keys if k not in schema.names] if spec.dedup else []
    if unknown_keys:
        raise PrepSpecError(
            f"source {spec.source!r}: dedup.keys {unknown_keys} are not columns of the common "
            f"schema; use common (renamed) column names from: {schema.names}"
        )
    clashing = sorted(n for n in schema.names if n.startswith(TOKEN_PREFIXES))
    if clashing:
        raise PrepSpecError(
            f"schema columns {clashing} use a prefix reserved for linkage tokens {TOKEN_PREFIXES}"
        )
    return derived


def _check_units(spec: PrepSpec, schema: TableSchema) -> None:
    """A unit conversion must land in the unit the common schema declares for its column."""
    for name, rules in spec.columns.items():
        column = schema.column(name) if name in schema.names else None
        declared = getattr(column, "unit", None)
        if rules.unit is None or declared is None or rules.unit.to_unit == declared:
            continue
        raise PrepSpecError(
            f"source {spec.source!r}: column {name!r} converts {rules.unit.from_unit} to "
            f"{rules.unit.to_unit}, but the common schema measures it in {declared}; set its "
            f"unit 'to' to {declared!r}"
        )
