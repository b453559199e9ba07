"""Columns a site withholds: they may feed linkage tokens and nothing else.

Which columns are direct identifiers is otherwise said by the job's schema and prep spec, both
written on the broker's side; a broker that declared a name column `text` and renamed it would
receive it in prepared rows. The site's own list is checked against the preparation the job
asks for, before any row is read.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedsynth.expressions import parse
from fedsynth.prep import PrepSpec, output_schema
from fedsynth.schema import TableSchema
from supplier_agent.outgoing import TaskRefused


def check_withheld(withheld: Sequence[str], spec: PrepSpec, schema: TableSchema) -> None:
    """TaskRefused naming the column when the preparation would let a withheld source column
    out other than as linkage tokens: as a column of the prepared rows, read by a derivation
    (whose output would carry it), or deciding which rows leave (a cleansing rule or a required
    schema column on it would quarantine rows by its value). Dedup keys may name it: removing
    duplicate people by name is ordinary cleansing, and tells only how many rows repeat."""
    if not withheld:
        return
    out = set(output_schema(schema, spec).names)
    derived_from = {name for d in spec.derive for name in parse(d.expr).columns}
    for source_column in withheld:
        name = spec.rename.get(source_column, source_column)
        shown = f"{source_column!r}" + (f" (renamed {name!r})" if name != source_column else "")
        if name in out:
            _refuse(shown, "puts it into the rows it sends")
        if name in derived_from:
            _refuse(shown, "derives a column from it")
        if name in spec.columns or source_column in spec.columns:
            _refuse(shown, "sets cleansing rules on it, which would decide which rows leave")
        if name in schema.names and not schema.column(name).nullable:
            _refuse(shown, "requires it (nullable: false), which would decide which rows leave")


def _refuse(shown: str, what: str) -> None:
    raise TaskRefused(
        f"source column {shown} is withheld at this site, but the job's preparation {what}; "
        "only linkage tokens may be made from it"
    )
