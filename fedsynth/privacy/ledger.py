"""A supplier's persisted privacy ledger: per-source budget caps, charged before anything leaves.

The ledger is one SQLite file the supplier agent owns. `charge` checks the cap and records the
charge in one write transaction (BEGIN IMMEDIATE), so concurrent requests from threads or
processes are serialised and can never jointly overspend; the charge is durable (synchronous
FULL) before `charge` returns, so the caller releases only what is already paid for. A charge is
keyed by its release id: retrying a release after a crash finds the charge already made instead
of paying twice, and a crash before the commit leaves no charge at all.

A source is named by its label in the agent's config, and may also carry its location (a file
path, a database and query). Charges to one location count against every label that names it, so
renaming a source in the config does not start its budget again.

A head file beside the ledger (`<ledger>.head`) records how many charges were committed and a
SHA-256 chain over them, rewritten after each charge. A ledger found with fewer charges than its
head records, or other ones (truncated, deleted, restored from an old copy, edited), is refused:
an empty ledger would otherwise let every source spend its whole cap again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fedsynth.files import atomic_write_text
from fedsynth.privacy.accountant import PrivacyCost, compose
from fedsynth.privacy.spec import BudgetCap

_TOLERANCE = 1e-9
_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    release_id TEXT PRIMARY KEY,
    supplier TEXT NOT NULL,
    source TEXT NOT NULL,
    label TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    rdp TEXT,
    charged_at TEXT NOT NULL,
    location TEXT
)
"""


class LedgerError(ValueError):
    """A ledger request that cannot be served as asked (bad input, conflicting retry)."""


class BudgetExceeded(LedgerError):
    """The charge would take a source past its cap; nothing was recorded."""


class LedgerDamaged(LedgerError):
    """The ledger holds fewer or other charges than its head file records."""


@dataclass(frozen=True)
class Charge:
    """One recorded release: its cost, its own (epsilon, delta), and the source's total after it."""

    release_id: str
    source: str
    cost: PrivacyCost
    epsilon: float
    delta: float
    total_epsilon: float
    total_delta: float


@dataclass(frozen=True)
class Spent:
    """Budget a source has used, in (epsilon, delta) at the cap's delta."""

    epsilon: float
    delta: float


def head_path(path: Path) -> Path:
    """Where the head of the ledger at `path` lives."""
    return path.with_name(path.name + ".head")


def verify_ledger(path: str | Path) -> int | None:
    """The number of charges the head of the ledger at `path` records (None without a head: a
    new ledger, or one from before heads); LedgerDamaged when the ledger holds fewer or other
    charges."""
    path = Path(path)
    recorded = _read_head(head_path(path))
    if recorded is None or recorded[0] == 0:
        return None if recorded is None else 0
    count, digest = recorded
    found = 0
    if path.exists():
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=120.0)
        try:
            found = db.execute("SELECT COUNT(*) FROM charges").fetchone()[0]
            same = found >= count and _chain(db, count) == digest
        except sqlite3.DatabaseError:
            same = False
        finally:
            db.close()
        if same:
            return count
    raise LedgerDamaged(
        f"privacy ledger {path} holds {found} charges where its head {head_path(path)} records "
        f"{count}, or other ones: the ledger was truncated, deleted, replaced by an older copy or "
        "edited, and an incomplete ledger would let sources spend their budget again. Restore "
        "the ledger from backup; DP tasks are refused until then"
    )


def _read_head(path: Path) -> tuple[int, str] | None:
    """(charges, chain digest) a head file records; None before the first head."""
    try:
        head = json.loads(path.read_text(encoding="utf-8"))
        return int(head["charges"]), str(head["sha256"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LedgerDamaged(
            f"privacy ledger head {path} is unreadable ({exc}); restore it and its ledger from "
            "the same backup"
        ) from exc


class PrivacyLedger:
    """The (epsilon, delta) charged per source of one supplier, against per-source caps."""

    def __init__(
        self,
        path: str | Path,
        *,
        supplier: str,
        cap: BudgetCap,
        source_caps: Mapping[str, BudgetCap] | None = None,
    ) -> None:
        if not supplier:
            raise LedgerError("a ledger belongs to a supplier: give its name")
        self.path = Path(path)
        self.supplier = supplier
        self.cap = cap
        self.source_caps = dict(source_caps or {})
        self.head_path = head_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        recorded = verify_ledger(self.path)
        with self._open() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(charges)")}
            if "location" not in columns:  # a ledger written before locations were kept
                db.execute("ALTER TABLE charges ADD COLUMN location TEXT")
            found = db.execute("SELECT COUNT(*) FROM charges").fetchone()[0]
        if recorded != found:  # no head yet, or one a crash left behind the last charge
            self._write_head()

    def cap_for(self, source: str) -> BudgetCap:
        """The cap of `source` (its own, else the ledger-wide one)."""
        return self.source_caps.get(source, self.cap)

    def charge(
        self, source: str, release_id: str, cost: PrivacyCost, *, location: str | None = None
    ) -> Charge:
        """Record `cost` for `source` (found at `location`) if the cap allows it, else raise
        BudgetExceeded.

        Call before the release leaves. The same release id charged again with the same cost
        returns the recorded charge (a retry after a crash); with another cost it is refused.
        """
        if not source or not release_id:
            raise LedgerError("a charge needs a source name and a release id")
        if not isinstance(cost, PrivacyCost):
            raise LedgerError(f"a charge needs a PrivacyCost, got {type(cost).__name__}")
        cap = self.cap_for(source)
        with self._transaction() as db:
            row = db.execute(
                "SELECT source, label, epsilon, delta, rdp FROM charges WHERE release_id = ?",
                (release_id,),
            ).fetchone()
            history = self._costs(db, source, location)
            if row is not None:
                if row[0] != source or _row_cost(row[1:]) != cost:
                    raise LedgerError(
                        f"release {release_id!r} was already charged with another cost or source;"
                        " a release id names one release only"
                    )
                return _charge(release_id, source, cost, history, cap)
            result = _charge(release_id, source, cost, [*history, cost], cap)
            if (
                result.total_epsilon > cap.epsilon + _TOLERANCE
                or result.total_delta > cap.delta + _TOLERANCE
            ):
                raise BudgetExceeded(
                    f"supplier {self.supplier!r}, source {source!r}: release {release_id!r} "
                    f"would bring the spend to epsilon {result.total_epsilon:.4g}, delta "
                    f"{result.total_delta:.3g}, over the cap ({cap.epsilon}, {cap.delta}); "
                    "ask for less or raise the cap in the agent's config"
                )
            db.execute(
                "INSERT INTO charges VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    release_id,
                    self.supplier,
                    source,
                    cost.label,
                    cost.epsilon,
                    cost.delta,
                    None if cost.rdp is None else json.dumps(list(cost.rdp)),
                    datetime.now(UTC).isoformat(),
                    location,
                ),
            )
        self._write_head()
        return result

    def check(self, source: str, cost: PrivacyCost, *, location: str | None = None) -> None:
        """Raise BudgetExceeded if charging `cost` to `source` now would pass its cap.

        Read-only: lets a site refuse a task before it touches data; `charge` still decides.
        """
        cap = self.cap_for(source)
        with self._open() as db:
            total = _spent(compose([*self._costs(db, source, location), cost]), cap)
        if total.epsilon > cap.epsilon + _TOLERANCE or total.delta > cap.delta + _TOLERANCE:
            raise BudgetExceeded(
                f"supplier {self.supplier!r}, source {source!r}: {cost.label or 'this release'} "
                f"would bring the spend to epsilon {total.epsilon:.4g}, delta {total.delta:.3g}, "
                f"over the cap ({cap.epsilon}, {cap.delta}); ask for less or raise the cap in the "
                "agent's config"
            )

    def spent(self, source: str, *, location: str | None = None) -> Spent:
        """What `source` (and any label charged at `location`) has spent so far."""
        with self._open() as db:
            total = compose(self._costs(db, source, location))
        return _spent(total, self.cap_for(source))

    def remaining_epsilon(self, source: str, *, location: str | None = None) -> float:
        """Epsilon still available to `source` at its cap's delta."""
        spent = self.spent(source, location=location)
        return max(0.0, self.cap_for(source).epsilon - spent.epsilon)

    def sources(self) -> list[str]:
        """Every source of this supplier that has been charged, sorted."""
        with self._open() as db:
            rows = db.execute(
                "SELECT DISTINCT source FROM charges WHERE supplier = ? ORDER BY source",
                (self.supplier,),
            ).fetchall()
        return [row[0] for row in rows]

    def history(self, source: str, *, location: str | None = None) -> list[PrivacyCost]:
        """Every cost charged to `source` or, under any label, to `location`, oldest first."""
        with self._open() as db:
            return self._costs(db, source, location)

    def _costs(
        self, db: sqlite3.Connection, source: str, location: str | None
    ) -> list[PrivacyCost]:
        rows = db.execute(
            "SELECT label, epsilon, delta, rdp FROM charges WHERE supplier = ? "
            "AND (source = ? OR (? IS NOT NULL AND location = ?)) ORDER BY rowid",
            (self.supplier, source, location, location),
        ).fetchall()
        return [_row_cost(row) for row in rows]

    def _write_head(self) -> None:
        """Record the committed charges; a head behind the ledger (a crash between the two
        writes, or another process's charge) is a prefix and still checks."""
        with self._open() as db:
            count = db.execute("SELECT COUNT(*) FROM charges").fetchone()[0]
            digest = _chain(db, count)
        atomic_write_text(self.head_path, json.dumps({"charges": count, "sha256": digest}) + "\n")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=120.0, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        return db

    @contextmanager
    def _open(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()


def _row_cost(row: tuple[str, float, float, str | None]) -> PrivacyCost:
    label, epsilon, delta, rdp = row
    curve = None if rdp is None else tuple(float(v) for v in json.loads(rdp))
    return PrivacyCost(rdp=curve, epsilon=epsilon, delta=delta, label=label)


def _spent(total: PrivacyCost, cap: BudgetCap) -> Spent:
    if total.rdp is None:
        return Spent(total.epsilon, total.delta)
    return Spent(total.epsilon_at(cap.delta), cap.delta)


def _charge(
    release_id: str, source: str, cost: PrivacyCost, history: list[PrivacyCost], cap: BudgetCap
) -> Charge:
    own = _spent(cost, cap)
    total = _spent(compose(history), cap)
    return Charge(
        release_id=release_id,
        source=source,
        cost=cost,
        epsilon=own.epsilon,
        delta=own.delta,
        total_epsilon=total.epsilon,
        total_delta=total.delta,
    )


def _chain(db: sqlite3.Connection, count: int) -> str:
    """SHA-256 chain over the first `count` charges in the order they were committed."""
    digest = hashlib.sha256(b"fedsynth privacy ledger").hexdigest()
    rows = db.execute(
        "SELECT release_id, supplier, source, label, epsilon, delta, rdp, charged_at, location "
        "FROM charges ORDER BY rowid LIMIT ?",
        (count,),
    )
    for row in rows:
        line = json.dumps([digest, *row], separators=(",", ":"))
        digest = hashlib.sha256(line.encode()).hexdigest()
    return digest
