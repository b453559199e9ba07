"""The privacy ledger: caps hold under concurrency, charges are durable and never doubled."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sqlite3
import threading
from pathlib import Path

import pytest

from fedsynth.privacy.accountant import PrivacyCost, approximate_cost, gaussian_cost
from fedsynth.privacy.ledger import (
    BudgetExceeded,
    LedgerDamaged,
    LedgerError,
    PrivacyLedger,
    verify_ledger,
)
from fedsynth.privacy.spec import BudgetCap

CAP = BudgetCap(epsilon=1.0, delta=1e-5)


def _ledger(path: Path) -> PrivacyLedger:
    return PrivacyLedger(path / "ledger.sqlite", supplier="hospital-a", cap=CAP)


def test_a_charge_over_the_cap_is_refused_and_not_recorded(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.charge("visits", "r1", approximate_cost(0.7))
    with pytest.raises(BudgetExceeded, match="over the cap"):
        ledger.charge("visits", "r2", approximate_cost(0.4))
    assert ledger.spent("visits").epsilon == pytest.approx(0.7)
    assert len(ledger.history("visits")) == 1


def test_sources_have_separate_budgets_and_their_own_caps(tmp_path: Path) -> None:
    ledger = PrivacyLedger(
        tmp_path / "l.sqlite",
        supplier="s",
        cap=CAP,
        source_caps={"claims": BudgetCap(epsilon=0.2, delta=1e-5)},
    )
    ledger.charge("visits", "r1", approximate_cost(0.9))
    with pytest.raises(BudgetExceeded):
        ledger.charge("claims", "r2", approximate_cost(0.3))
    ledger.charge("claims", "r3", approximate_cost(0.2))
    assert ledger.remaining_epsilon("visits") == pytest.approx(0.1)


def test_rdp_charges_compose_below_the_sum_of_their_epsilons(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path / "l.sqlite", supplier="s", cap=BudgetCap(epsilon=10.0))
    cost = gaussian_cost(sigma=5.0)
    for i in range(4):
        ledger.charge("t", f"r{i}", cost)
    assert ledger.spent("t").epsilon < 4 * cost.epsilon_at(1e-6)


def _charge_in_thread(ledger: PrivacyLedger, barrier: threading.Barrier, i: int, out: list) -> None:
    barrier.wait()
    try:
        ledger.charge("visits", f"t{i}", approximate_cost(0.1))
        out.append(True)
    except BudgetExceeded:
        out.append(False)


def test_twenty_concurrent_threads_never_overspend(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    barrier = threading.Barrier(20)
    results: list[bool] = []
    threads = [
        threading.Thread(target=_charge_in_thread, args=(ledger, barrier, i, results))
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 10
    assert ledger.spent("visits").epsilon == pytest.approx(1.0)


def _charge_in_process(path: str, barrier: multiprocessing.synchronize.Barrier, i: int) -> None:
    ledger = PrivacyLedger(path, supplier="hospital-a", cap=CAP)
    barrier.wait()
    try:
        ledger.charge("visits", f"p{i}", approximate_cost(0.15))
    except BudgetExceeded:
        os._exit(3)
    os._exit(0)


def test_twenty_concurrent_processes_never_overspend(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite")
    PrivacyLedger(path, supplier="hospital-a", cap=CAP)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(20)
    procs = [context.Process(target=_charge_in_process, args=(path, barrier, i)) for i in range(20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    codes = [p.exitcode for p in procs]
    assert codes.count(0) == 6 and codes.count(3) == 14
    ledger = PrivacyLedger(path, supplier="hospital-a", cap=CAP)
    assert ledger.spent("visits").epsilon == pytest.approx(0.9)


def test_a_retried_release_is_not_charged_twice(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    first = ledger.charge("visits", "release-7", approximate_cost(0.6))
    reopened = _ledger(tmp_path)
    again = reopened.charge("visits", "release-7", approximate_cost(0.6))
    assert again.total_epsilon == first.total_epsilon == pytest.approx(0.6)
    with pytest.raises(LedgerError, match="already charged"):
        reopened.charge("visits", "release-7", approximate_cost(0.1))


def test_a_charge_is_durable_across_a_reopen(tmp_path: Path) -> None:
    _ledger(tmp_path).charge("visits", "r1", gaussian_cost(sigma=8.0))
    assert _ledger(tmp_path).history("visits") == [gaussian_cost(sigma=8.0)]


def _crash_inside_a_charge(path: str) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    db.execute(
        "INSERT INTO charges VALUES ('half', 'hospital-a', 'visits', '', 0.9, 0, NULL, 'now', NULL)"
    )
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_crash_before_commit_leaves_no_charge_and_no_lock(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    proc = multiprocessing.get_context("fork").Process(
        target=_crash_inside_a_charge, args=(str(ledger.path),)
    )
    proc.start()
    proc.join()
    assert proc.exitcode == -signal.SIGKILL
    assert ledger.spent("visits").epsilon == 0.0
    ledger.charge("visits", "r1", approximate_cost(1.0))


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_negative_nan_and_infinite_costs_never_reach_the_ledger(tmp_path: Path, bad: float) -> None:
    ledger = _ledger(tmp_path)
    with pytest.raises(ValueError):
        ledger.charge("visits", "r", PrivacyCost(epsilon=bad))
    with pytest.raises(ValueError):
        ledger.charge("visits", "r", PrivacyCost(epsilon=0.1, delta=bad))
    with pytest.raises(ValueError):
        BudgetCap(epsilon=bad)
    assert ledger.history("visits") == []


def test_charges_to_one_location_count_against_every_label_naming_it(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.charge("visits", "r1", approximate_cost(0.7), location="file:/data/visits.csv")
    with pytest.raises(BudgetExceeded, match="over the cap"):
        ledger.charge("visits-2024", "r2", approximate_cost(0.4), location="file:/data/visits.csv")
    assert ledger.spent("visits-2024", location="file:/data/visits.csv").epsilon == 0.7
    ledger.charge("claims", "r3", approximate_cost(0.9), location="file:/data/claims.csv")


def test_a_ledger_written_before_locations_were_kept_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE charges (release_id TEXT PRIMARY KEY, supplier TEXT NOT NULL, "
            "source TEXT NOT NULL, label TEXT NOT NULL, epsilon REAL NOT NULL, "
            "delta REAL NOT NULL, rdp TEXT, charged_at TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO charges VALUES ('r1', 'hospital-a', 'visits', 'old', 0.5, 0, NULL, 'x')"
        )
    ledger = _ledger(tmp_path)
    ledger.charge("visits", "r2", approximate_cost(0.3), location="file:/data/visits.csv")
    assert ledger.spent("visits").epsilon == pytest.approx(0.8)
    assert len(ledger.history("renamed", location="file:/data/visits.csv")) == 1


def _spend_most_of_the_cap(tmp_path: Path) -> Path:
    ledger = _ledger(tmp_path)
    ledger.charge("visits", "r1", approximate_cost(0.5))
    ledger.charge("visits", "r2", approximate_cost(0.4))
    return ledger.path


@pytest.mark.parametrize("damage", ["truncate", "delete", "older copy", "edit"])
def test_a_damaged_ledger_is_refused_instead_of_restarting_the_budget(
    tmp_path: Path, damage: str
) -> None:
    """A truncated or deleted ledger was recreated empty: every source could spend its cap
    again."""
    path = tmp_path / "ledger.sqlite"
    older = tmp_path / "older.sqlite"
    first = _ledger(tmp_path)
    first.charge("visits", "r1", approximate_cost(0.5))
    with sqlite3.connect(path) as db, sqlite3.connect(older) as copy:
        db.backup(copy)
    first.charge("visits", "r2", approximate_cost(0.4))
    if damage != "edit":
        for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            extra.unlink(missing_ok=True)
    if damage == "truncate":
        path.write_bytes(b"")
    elif damage == "delete":
        path.unlink()
    elif damage == "older copy":
        os.replace(older, path)
    else:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE charges SET epsilon = 0.01 WHERE release_id = 'r2'")
    with pytest.raises(LedgerDamaged, match="Restore the ledger from backup"):
        _ledger(tmp_path)
    with pytest.raises(LedgerDamaged):
        verify_ledger(path)


def test_a_ledger_ahead_of_its_head_is_accepted_and_the_head_catches_up(tmp_path: Path) -> None:
    """A crash between a charge's commit and its head write leaves the head one behind."""
    path = _spend_most_of_the_cap(tmp_path)
    head = path.with_name(path.name + ".head")
    behind = head.read_text()
    _ledger(tmp_path).charge("other", "r3", approximate_cost(0.1))
    head.write_text(behind)
    verify_ledger(path)
    reopened = _ledger(tmp_path)
    assert reopened.spent("visits").epsilon == pytest.approx(0.9)
    assert '"charges": 3' in head.read_text()
