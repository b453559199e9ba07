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
    out other than as linkage tokens: as a column of the prepared rows, or read by a
    derivation (whose output would carry it)."""
    if not withheld:
        return
    out = set(output_schema(schema, spec).names)
    derived_from = {name for d in spec.derive for name in parse(d.expr).columns}
    for source_column in withheld:
        name = spec.rename.get(source_column, source_column)
        shown = f"{source_column!r}" + (f" (renamed {name!r})" if name != source_column else "")
        if name in out:
            raise TaskRefused(
                f"source column {shown} is withheld at this site, but the job's preparation "
                "puts it into the rows it sends; only linkage tokens may be made from it"
            )
        if name in derived_from:
            raise TaskRefused(
                f"source column {shown} is withheld at this site, but the job derives a column "
                "from it; only linkage tokens may be made from it"
            )
