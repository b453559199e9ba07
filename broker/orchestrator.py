"""The orchestrator: runs every job as a persisted state machine over its topology's plan.

A job's finished steps and their results are rows of `job_steps`; each pass over a running job
starts at the first unfinished step, so a broker restarted mid-job carries on from there.
Supplier steps become one task per participating supplier (deterministic task ids, so queuing
again after a restart changes nothing); they finish when every supplier reported, or when the
task timeout passes and the spec's quorum is met. Whatever ends a job, its pending tasks are
closed and its raw and prepared rows deleted, with the deletion in the audit log.
A DP round whose masked vectors did not all arrive is restarted: its steps' results are dropped,
the restart (new round id, the remaining participants) is persisted in `job_restarts`, and the
round's steps run again as a new attempt with task ids of their own.
Broker steps (fits, audits, merges, releases) run on a pool of `limits.step_workers` threads,
at most one per job, so a long fit for one job does not hold up the steps of the others.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from broker.dp_steps import DP_ACTIONS, RoundRestart
from broker.state import BrokerState
from broker.steps import ACTIONS, JobContext, StepFailed, StepInterrupted, overdue
from broker.storage_faults import is_storage_fault
from broker.store import JobRow, TaskRow, age_s, now_iso
from fedsynth.jobs import JobSpec, JobState
from fedsynth.plans import Party, RoundInfo, Step, TaskOutcome, plan_of, round_start

log = logging.getLogger(__name__)

STEPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS job_steps (
    job_id TEXT NOT NULL REFERENCES jobs(job_id), step INTEGER NOT NULL, name TEXT NOT NULL,
    result_json TEXT NOT NULL, finished_at TEXT NOT NULL, PRIMARY KEY (job_id, step));
CREATE TABLE IF NOT EXISTS job_restarts (
    job_id TEXT NOT NULL REFERENCES jobs(job_id), round INTEGER NOT NULL,
    attempt INTEGER NOT NULL, round_id TEXT NOT NULL, participants_json TEXT NOT NULL,
    reason TEXT NOT NULL, restarted_at TEXT NOT NULL, PRIMARY KEY (job_id, round, attempt));
"""
POLL_S = 0.5
RETRY_S = 5.0
ALL_ACTIONS = ACTIONS | DP_ACTIONS


@dataclass(frozen=True)
class Attempt:
    """The latest restart of a DP round: its attempt number, round id and participants."""

    attempt: int
    round_id: str
    participants: tuple[str, ...]


@dataclass(frozen=True)
class BrokerRun:
    """A broker step handed to a worker: its job's context, its place in the plan, and the
    job's DP round restarts (a step may restart its round)."""

    ctx: JobContext
    index: int
    step: Step
    plan: tuple[Step, ...]
    restarts: dict[int, Attempt]


class Orchestrator:
    """Advances every submitted or running job on a background thread; broker steps run on
    `step_workers` threads of their own (default `limits.step_workers`)."""

    def __init__(
        self,
        state: BrokerState,
        poll_s: float = POLL_S,
        on_health: Callable[[bool], None] = lambda healthy: None,
        retry_s: float = RETRY_S,
        step_workers: int | None = None,
    ) -> None:
        self.state = state
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.on_health = on_health
        self._healthy = True
        self._health_guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="orchestrator", daemon=True)
        self._workers = ThreadPoolExecutor(
            step_workers or state.config.limits.step_workers, thread_name_prefix="broker-step"
        )
        self._guard = threading.Lock()
        self._in_flight: set[str] = set()
        self._storage_faults: dict[str, float] = {}
        state.db.create_tables(STEPS_SCHEMA)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop taking up steps and wait for the running ones: they end at their next
        checkpoint, unrecorded, and a restarted broker runs them again."""
        self._stop.set()
        self.state.notify_tasks()
        if self._thread.is_alive():
            self._thread.join()
        self._workers.shutdown(wait=True)

    def busy(self, job_id: str) -> bool:
        """Whether a broker step of the job is running now."""
        with self._guard:
            return job_id in self._in_flight

    def _loop(self) -> None:
        """Tick until stopped. A pass that fails outside any one job (the store cannot be
        written: a full disk) is retried, and the broker reports NOT_SERVING until one passes."""
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:
                if is_storage_fault(exc):
                    self.state.storage_faults.log(exc, "the job runner")
                else:
                    log.exception("job runner pass failed (%s); retrying in %ss", exc, self.retry_s)
                self._set_healthy(False)
                self._stop.wait(self.retry_s)
                continue
            with self._guard:
                healthy = not self._storage_faults
            self._set_healthy(healthy and not self.state.storage_faults.recent())
            with self.state.tasks_changed:
                self.state.tasks_changed.wait(timeout=self.poll_s)

    def _set_healthy(self, healthy: bool) -> None:
        with self._health_guard:
            if healthy == self._healthy or self._stop.is_set():
                return
            self._healthy = healthy
            if healthy:
                log.warning("job runner recovered")
            self.on_health(healthy)

    def tick(self) -> None:
        """One pass over the unfinished jobs; the store's own errors end the pass, since they
        say nothing about the job being advanced."""
        store = self.state.store
        unfinished = store.jobs(JobState.SUBMITTED).rows + store.jobs(JobState.RUNNING).rows
        with self._guard:
            ids = {job.job_id for job in unfinished}
            for ended in [j for j in self._storage_faults if j not in ids]:
                del self._storage_faults[ended]
        for job in unfinished:
            if self._stop.is_set():
                return
            if self.busy(job.job_id) or self._resting(job.job_id):
                continue
            try:
                self.advance(job)
            except StepFailed as exc:
                self._finish(job.job_id, JobState.FAILED, str(exc))
            except sqlite3.OperationalError:
                raise
            except Exception as exc:
                log.exception("job %s: unexpected error", job.job_id)
                self._finish(job.job_id, JobState.FAILED, f"broker error: {exc}")

    def steps_done(self, job_id: str) -> dict[int, dict[str, Any]]:
        rows = self.state.db.query(
            "SELECT step, result_json FROM job_steps WHERE job_id = ? ORDER BY step", (job_id,)
        )
        return {int(r["step"]): json.loads(r["result_json"]) for r in rows}

    def advance(self, job: JobRow) -> None:
        """Run the job's steps from the first unfinished one until one must wait."""
        spec = JobSpec.from_json(job.spec_json, source=f"job {job.job_id}")
        if job.state == JobState.SUBMITTED:
            job = self.state.store.set_job_state(job.job_id, JobState.RUNNING)
            self.state.audit.append(self._uri, "job.started", job.job_id)
        reason = overdue(job, spec)
        if reason is not None:
            raise StepFailed(reason)
        plan = plan_of(spec)
        done = self.steps_done(job.job_id)
        restarts = self.restarts(job.job_id)
        results = {plan[i].name: r for i, r in done.items()}
        participants = [s.supplier for s in spec.suppliers]
        for i, step in enumerate(plan):
            again = restarts.get(step.round)
            if again is not None and i == round_start(plan, step.round):
                participants = [p for p in participants if p in again.participants]
            if i in done:
                if step.party is Party.SUPPLIERS:
                    participants = sorted(done[i]["suppliers"])
                continue
            if self._stop.is_set() or not self._running(job.job_id):
                return
            dp_round = _round(job, spec, step, restarts, participants)
            ctx = JobContext(self.state, job, spec, results, participants, dp_round, self._stop)
            if step.party is Party.BROKER:
                self._launch(BrokerRun(ctx, i, step, plan, restarts))
                return
            attempt = again.attempt if again is not None else 0
            result = self._supplier_step(ctx, i, step, attempt)
            if result is None:
                return
            participants = sorted(result["suppliers"])
            self._record(job.job_id, i, step, result)
            results[step.name] = result
        self._finish(job.job_id, JobState.SUCCEEDED, "")

    def _launch(self, run: BrokerRun) -> None:
        """Run the broker step on a worker; its end wakes the job runner."""
        job_id = run.ctx.job.job_id
        with self._guard:
            self._in_flight.add(job_id)
        log.info("job %s: step %s started", job_id, run.step.name)
        try:
            self._workers.submit(self._run_step, run)
        except RuntimeError:  # the pool shut down: the broker is stopping
            self._landed(job_id)

    def _run_step(self, run: BrokerRun) -> None:
        """A broker step and what its outcome does to the job. A store error (a full disk)
        leaves the job running: the step runs again after `retry_s`, and until it succeeds
        the broker reports NOT_SERVING."""
        job_id, name = run.ctx.job.job_id, run.step.name
        try:
            self._outcome(run)
        except sqlite3.OperationalError as exc:
            self.state.storage_faults.log(exc, f"job {job_id}, step {name}")
            with self._guard:
                self._storage_faults[job_id] = time.monotonic() + self.retry_s
            self._set_healthy(False)
        except Exception as exc:
            log.exception("job %s: step %s ended without an outcome", job_id, name)
            self._finish(job_id, JobState.FAILED, f"broker error: {exc}")
        else:
            with self._guard:
                self._storage_faults.pop(job_id, None)
        finally:
            self._landed(job_id)

    def _outcome(self, run: BrokerRun) -> None:
        job_id, name = run.ctx.job.job_id, run.step.name
        try:
            result = ALL_ACTIONS[run.step.action](run.ctx)
        except RoundRestart as restart:
            self._restart(job_id, run.plan, run.restarts, restart)
            return
        except StepInterrupted as why:
            log.info("job %s: step %s stopped: %s", job_id, name, why)
            return
        except sqlite3.OperationalError:
            raise
        except Exception as exc:
            # Ending a job purges its rows, so a step still reading them fails (StepFailed: no
            # such upload, or an error reading a deleted file): that is the job's end, not a
            # fault of the step.
            state = self.state.settled_state(job_id)
            if state != JobState.RUNNING:
                log.info("job %s: step %s stopped: the job is %s", job_id, name, state)
            elif isinstance(exc, StepFailed):
                self._finish(job_id, JobState.FAILED, str(exc))
            else:
                log.exception("job %s: unexpected error", job_id)
                self._finish(job_id, JobState.FAILED, f"broker error: {exc}")
            return
        self._record(job_id, run.index, run.step, result)

    def _landed(self, job_id: str) -> None:
        with self._guard:
            self._in_flight.discard(job_id)
        self.state.notify_tasks()

    def _resting(self, job_id: str) -> bool:
        """Whether the job waits out `retry_s` after its step failed to be stored."""
        with self._guard:
            until = self._storage_faults.get(job_id)
        return until is not None and time.monotonic() < until

    def restarts(self, job_id: str) -> dict[int, Attempt]:
        """The latest restart of each DP round of the job that was restarted."""
        rows = self.state.db.query(
            "SELECT round, attempt, round_id, participants_json FROM job_restarts "
            "WHERE job_id = ? ORDER BY round, attempt",
            (job_id,),
        )
        return {
            int(r["round"]): Attempt(
                int(r["attempt"]), r["round_id"], tuple(json.loads(r["participants_json"]))
            )
            for r in rows
        }

    def _restart(
        self, job_id: str, plan: tuple[Step, ...], restarts: dict[int, Attempt], why: RoundRestart
    ) -> None:
        """Run DP round `why.number` again without the suppliers that did not deliver."""
        first = round_start(plan, why.number)
        previous = restarts.get(why.number)
        attempt = (previous.attempt if previous is not None else 0) + 1
        with self.state.db.transaction() as conn:
            conn.execute(
                "INSERT INTO job_restarts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    why.number,
                    attempt,
                    why.round_id,
                    json.dumps(sorted(why.participants)),
                    why.reason,
                    now_iso(),
                ),
            )
            conn.execute("DELETE FROM job_steps WHERE job_id = ? AND step >= ?", (job_id, first))
        store = self.state.store
        for task in store.tasks_of_job(job_id):
            if task.state == "pending":
                store.finish_task(task.task_id, False, b"", f"round restarted: {why.reason}")
        self.state.audit.append(
            self._uri,
            "job.round_restarted",
            job_id,
            round=why.number,
            attempt=attempt,
            round_id=why.round_id,
            participants=sorted(why.participants),
            reason=why.reason,
        )
        self.state.notify_tasks()
        log.info("job %s: round %d restarted: %s", job_id, why.number, why.reason)

    def _supplier_step(
        self, ctx: JobContext, index: int, step: Step, attempt: int = 0
    ) -> dict[str, Any] | None:
        """Queue the step's tasks once; its result when finished, None while it must wait."""
        store, spec, job_id = self.state.store, ctx.spec, ctx.job.job_id
        prefix = f"{job_id}.{index}." if attempt == 0 else f"{job_id}.{index}~{attempt}."
        tasks = {t.supplier: t for t in store.tasks_of_job(job_id) if t.task_id.startswith(prefix)}
        if not tasks:
            inputs = {name: ctx.artifact(name) for name in step.inputs}
            weights = {s.supplier: s.weight for s in spec.suppliers}
            shares = row_shares(spec.rows, {p: weights[p] for p in ctx.participants})
            job = spec.model_dump(mode="json", by_alias=True)
            for supplier in ctx.participants:
                payload = {"job": job, "rows": shares[supplier], "inputs": inputs}
                if ctx.dp_round is not None:
                    payload["dp_round"] = ctx.dp_round.model_dump(mode="json")
                store.add_task(
                    job_id,
                    supplier,
                    step.action,
                    payload,
                    artifacts=tuple(inputs.values()),
                    task_id=prefix + supplier,
                )
            self.state.notify_tasks()
            return None
        return _settle(step, tasks, spec)

    def _record(self, job_id: str, index: int, step: Step, result: dict[str, Any]) -> None:
        """A finished step and its audit entry, in one transaction."""
        with self.state.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO job_steps VALUES (?, ?, ?, ?, ?)",
                (job_id, index, step.name, json.dumps(result, sort_keys=True), now_iso()),
            )
            self.state.audit.append_within(conn, self._uri, "job.step", job_id, step=step.name)
        self.state.audit.sync_head()

    def _running(self, job_id: str) -> bool:
        return self.state.store.job(job_id).state == JobState.RUNNING

    def _finish(self, job_id: str, outcome: JobState, reason: str) -> None:
        if self.state.end_job(job_id, outcome, reason, self._uri) is not None:
            log.info("job %s %s %s", job_id, outcome.value, reason)

    @property
    def _uri(self) -> str:
        return self.state.config.uri


def _settle(step: Step, tasks: dict[str, TaskRow], spec: JobSpec) -> dict[str, Any] | None:
    """The finished step's results per supplier, None to wait, StepFailed when it cannot end."""
    required = spec.quorum or len(spec.suppliers)
    done, failed = {}, {s: t.error for s, t in tasks.items() if t.state == "failed"}
    for supplier, task in tasks.items():
        if task.state != "done":
            continue
        try:
            outcome = TaskOutcome.model_validate_json(task.result_json or b"{}")
        except ValidationError as exc:
            failed[supplier] = f"sent an invalid result for {task.task_id}: {exc}"
            continue
        done[supplier] = outcome.model_dump(mode="json")
    pending = sorted(s for s, t in tasks.items() if t.state == "pending")
    if len(done) + len(pending) < required:
        reasons = "; ".join(f"{s}: {e}" for s, e in sorted(failed.items()))
        raise StepFailed(
            f"step {step.name!r} cannot reach the quorum of {required} supplier(s): {reasons}"
        )
    if pending:
        started = min(t.created_at for t in tasks.values())
        if age_s(started) <= spec.timeouts.task_s:
            return None
        if len(done) < required:
            raise StepFailed(
                f"step {step.name!r}: supplier(s) {pending} did not answer within "
                f"timeouts.task_s={spec.timeouts.task_s}"
            )
    return {"suppliers": done, "missing": pending, "refused": failed}


def _round(
    job: JobRow, spec: JobSpec, step: Step, restarts: dict[int, Attempt], participants: list[str]
) -> RoundInfo | None:
    """The DP round `step` belongs to (its id changes with each restart), or None."""
    if not step.round or spec.privacy is None:
        return None
    again = restarts.get(step.round)
    round_id = again.round_id if again is not None else f"{job.job_id}/round-{step.round}"
    return RoundInfo(
        number=step.round,
        round_id=round_id,
        participants=participants,
        secure=spec.privacy.secure_aggregation,
    )


def row_shares(rows: int, weights: dict[str, float]) -> dict[str, int]:
    """Split `rows` over the suppliers in proportion to their weights, in whole rows that add
    up to `rows` (largest remainders first; ties go to the supplier listed first)."""
    total = sum(weights.values())
    exact = {s: rows * w / total for s, w in weights.items()}
    shares = {s: int(x) for s, x in exact.items()}
    by_remainder = sorted(weights, key=lambda s: exact[s] - shares[s], reverse=True)
    for supplier in by_remainder[: rows - sum(shares.values())]:
        shares[supplier] += 1
    return shares
