"""What preparing one source did: the `PrepReport` (counts per rule) and the quarantine file."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from fedsynth.files import atomic_path

QUARANTINE_HEADER = ("source_row", "column", "value", "rule", "reason")
REDACTED = "<redacted identifier>"


class RuleCount(BaseModel):
    """How many cells one rule changed (or flagged) in one column."""

    rule: str
    column: str
    count: int = Field(ge=0)


class PrepReport(BaseModel):
    """What preparation did; rows_in = rows_out + rows_quarantined + duplicates_removed."""

    source: str
    rows_in: int = Field(ge=0)
    rows_out: int = Field(ge=0)
    rows_quarantined: int = Field(ge=0)
    duplicates_removed: int = Field(ge=0)
    rules: list[RuleCount] = Field(default_factory=list)
    dropped_columns: list[str] = Field(default_factory=list)
    token_columns: list[str] = Field(default_factory=list)

    def count(self, rule: str, column: str | None = None) -> int:
        """Cells changed by `rule` (in `column`, or in all columns)."""
        return sum(r.count for r in self.rules if r.rule == rule and column in (None, r.column))


@dataclass(frozen=True)
class QuarantineEntry:
    """One cell that made its row unusable: where, what it held, which rule and why."""

    source_row: int
    column: str
    value: str | None
    rule: str
    reason: str


@dataclass
class Ledger:
    """Accumulates rule counts and quarantine entries while a pipeline runs."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    entries: list[QuarantineEntry] = field(default_factory=list)

    def changed(self, rule: str, column: str, n: int) -> None:
        if n:
            self.counts[(rule, column)] += int(n)

    def reject(self, entry: QuarantineEntry) -> None:
        self.entries.append(entry)
        self.counts[(entry.rule, entry.column)] += 1

    def rule_counts(self) -> list[RuleCount]:
        return [
            RuleCount(rule=rule, column=column, count=n)
            for (rule, column), n in sorted(self.counts.items())
        ]


def write_quarantine(entries: list[QuarantineEntry], path: str | Path) -> None:
    """Write quarantine entries as CSV, atomically (an empty file still has its header)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(QUARANTINE_HEADER)
        for e in sorted(entries, key=lambda e: (e.source_row, e.column)):
            writer.writerow(
                (e.source_row, e.column, "" if e.value is None else e.value, e.rule, e.reason)
            )
