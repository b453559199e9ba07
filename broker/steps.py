"""The broker's actions in topology plans: merge, fit, sample, audit and release.

Each action reads what earlier steps recorded (supplier results, artifact hashes), writes its
outputs to the content-addressed artifact store, and returns a JSON result that the orchestrator
persists, so a restarted broker resumes after the last finished step.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import pandas as pd
from pydantic import ValidationError

from broker.releases import ReleaseRefused, charges_spent, publish
from broker.state import BrokerState
from broker.store import JobRow, age_s
from fedsynth import audit
from fedsynth.audit.html import render_html
from fedsynth.frame import conform
from fedsynth.jobs import JobSpec, JobState, Topology
from fedsynth.plans import RoundInfo, TaskOutcome
from fedsynth.prep import PrepSpec, output_schema
from fedsynth.prep import run as prepare
from fedsynth.prep.harmonize import TOKEN_PREFIXES
from fedsynth.prep.linker import Linker
from fedsynth.schema import TableSchema
from fedsynth.security.attestation import SignedDocument
from fedsynth.splits import holdout_split
from fedsynth.synth import GaussianCopula, SufficientStats, synthesizer_class

SOURCE_COLUMN = "source"
CHECK_S = 0.25


class StepFailed(Exception):
    """A step that cannot succeed; the message is the job's failure reason for the operator."""


class StepInterrupted(Exception):
    """A step stopped part-way because its job ended or the broker is stopping; nothing of it
    is recorded, so a restarted broker runs the step again from its start."""


def overdue(job: JobRow, spec: JobSpec) -> str | None:
    """Why `job` must fail now that it has run past its time limit, or None while it may run."""
    if age_s(job.created_at) > spec.timeouts.job_s:
        return f"the job did not finish within timeouts.job_s={spec.timeouts.job_s}"
    return None


@dataclass
class JobContext:
    """A job being executed: its spec and the results of the steps finished so far."""

    state: BrokerState
    job: JobRow
    spec: JobSpec
    results: dict[str, dict[str, Any]]
    participants: list[str]
    dp_round: RoundInfo | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    _checked_at: float = field(default=float("-inf"), init=False, repr=False)

    def checkpoint(self, *_progress: object) -> None:
        """End the step here if its job was cancelled or ran out of time, or the broker stops.

        Fits, samples and audits take it as their progress callback, so a long step ends
        within one epoch, batch or audit stage; the job's row is read at most every CHECK_S.
        """
        if self.stopping.is_set():
            raise StepInterrupted("the broker is stopping")
        now = time.monotonic()
        if now - self._checked_at < CHECK_S:
            return
        self._checked_at = now
        state = self.state.store.job(self.job.job_id).state
        if state != JobState.RUNNING:
            raise StepInterrupted(f"the job is {state}")
        reason = overdue(self.job, self.spec)
        if reason is not None:
            raise StepFailed(reason)

    @property
    def broker_uri(self) -> str:
        config = self.state.config
        return f"spiffe://{config.federation}/broker/{config.name}"

    def schema(self) -> TableSchema:
        """The schema that is modelled and released (no direct identifiers, no tokens)."""
        return self.spec.model_schema()

    def supplier_schema(self, supplier: str) -> TableSchema:
        """The schema of `supplier`'s prepared rows (its columns, with linkage tokens)."""
        return output_schema(self.spec.schema_for(supplier), self.prep(supplier))

    def prep(self, supplier: str) -> PrepSpec:
        """`supplier`'s prep spec; in `central` without linkage, whose secret only sites hold."""
        prep = self.spec.prep_for(supplier, self.spec.source_of(supplier))
        if self.spec.topology is Topology.CENTRAL:
            return prep.model_copy(update={"linkage": None})
        return prep

    def artifact(self, name: str) -> str:
        """SHA-256 of the artifact `name` produced by an earlier broker step."""
        for result in self.results.values():
            found = result.get("artifacts", {}).get(name)
            if found is not None:
                return str(found)
        raise StepFailed(f"no earlier step produced the artifact {name!r}")

    def supplier_results(self, step: str) -> dict[str, dict[str, Any]]:
        return dict(self.results[step]["suppliers"])

    def upload(self, supplier: str, result: dict[str, Any], name: str) -> bytes:
        """The bytes `supplier` uploaded as `name` for this job, checked against the store."""
        sha256 = result.get("uploads", {}).get(name)
        rows = [
            u
            for u in self.state.store.uploads_of_job(self.job.job_id)
            if u.supplier == supplier and u.sha256 == sha256 and u.state == "complete"
        ]
        if sha256 is None or not rows:
            raise StepFailed(f"supplier {supplier!r} reported {name!r} but no such upload exists")
        if rows[0].encrypted:
            return b"".join(self.state.artifacts.read_encrypted(sha256))
        return self.state.artifacts.path(sha256).read_bytes()

    def stored(self, sha256: str) -> bytes:
        return self.state.artifacts.path(sha256).read_bytes()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """A table as Parquet bytes, for the artifact store."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _stats(ctx: JobContext, step: str, name: str) -> SufficientStats:
    parts = [
        SufficientStats.from_bytes(ctx.upload(s, r, name), source=f"{s}'s {step}")
        for s, r in sorted(ctx.supplier_results(step).items())
    ]
    try:
        return reduce(SufficientStats.merge, parts)
    except ValueError as exc:
        raise StepFailed(f"{step} from the suppliers do not merge: {exc}") from exc


def merge_marginals(ctx: JobContext) -> dict[str, Any]:
    """Round one: add up the suppliers' marginal statistics."""
    merged = _stats(ctx, "marginal_stats", "marginal-stats.fsa")
    digest = ctx.state.artifacts.put_bytes(merged.to_bytes())
    return {"artifacts": {"marginal_stats": digest.sha256}}


def fit_and_sample(ctx: JobContext) -> dict[str, Any]:
    """Fit the copula from both merged rounds and sample the candidate table."""
    marginal = SufficientStats.from_bytes(ctx.stored(ctx.artifact("marginal_stats")))
    dependence = _stats(ctx, "dependence_stats", "dependence-stats.fsa")
    model = GaussianCopula(**ctx.spec.synthesizer.params)
    model.fit_marginals(marginal, progress=ctx.checkpoint)
    model.fit_dependence(dependence)
    candidate = model.sample(ctx.spec.rows, seed=ctx.spec.seed, progress=ctx.checkpoint)
    artifacts = ctx.state.artifacts
    return {
        "artifacts": {
            "model": artifacts.put_bytes(model.to_artifact().to_bytes()).sha256,
            "candidate": artifacts.put_bytes(parquet_bytes(candidate)).sha256,
        }
    }


def _bound_verdicts(
    ctx: JobContext, step: str, datasets: dict[str, str]
) -> tuple[list[SignedDocument], list[str], dict[str, Any]]:
    """The suppliers' signed verdicts, and reasons for any not bound to this job and dataset."""
    verdicts, reasons, summary = [], [], {}
    for supplier, result in sorted(ctx.supplier_results(step).items()):
        if result.get("verdict") is None:
            raise StepFailed(f"supplier {supplier!r} sent no signed verdict for {step}")
        signed = SignedDocument.from_json(result["verdict"])
        document = json.loads(signed.payload)
        expected = {"supplier": supplier, "job_id": ctx.job.job_id}
        expected["dataset_sha256"] = datasets[supplier]
        wrong = [k for k, v in expected.items() if document.get(k) != v]
        if wrong:
            reasons.append(f"supplier {supplier!r} verdict does not match this job on {wrong}")
        verdicts.append(signed)
        summary[supplier] = {
            k: document.get(k) for k in ("verdict", "failed_checks", "report_sha256", "scores")
        }
    return verdicts, reasons, summary


def _release(
    ctx: JobContext,
    dataset: bytes,
    report: dict[str, Any],
    verdicts: list[SignedDocument],
    html: bytes | None = None,
) -> dict[str, Any]:
    state = ctx.state.store.job(ctx.job.job_id).state
    if state != JobState.RUNNING:
        raise StepFailed(
            f"job {ctx.job.job_id} is {state} (changed while it ran): nothing released"
        )
    report_json = json.dumps(report, sort_keys=True, default=str).encode()
    page = html or _summary_html(ctx, report).encode()
    try:
        published = publish(
            ctx.state,
            job_id=ctx.job.job_id,
            name=ctx.spec.name,
            dataset=dataset,
            audit_report_json=report_json,
            audit_html=page,
            job_spec_hash=ctx.job.spec_sha256,
            topology=ctx.spec.topology.value,
            synthesizer=ctx.spec.synthesizer.name,
            privacy_spent=_privacy_spent(ctx),
            supplier_verdicts=verdicts,
        )
    except ReleaseRefused as exc:
        raise StepFailed(f"release refused: {'; '.join(exc.reasons)}") from exc
    return {"release_id": published.release_id, "candidate_id": published.candidate_id}


def _privacy_spent(ctx: JobContext) -> dict[str, Any] | None:
    """What the release spent: the model's cost where the broker fitted it, else the charges
    the suppliers' ledgers recorded for this job (restarted rounds included); None without DP."""
    if ctx.spec.privacy is None:
        return None
    if ctx.spec.topology in {Topology.CENTRAL, Topology.PREPARED}:
        return {**ctx.results["synthesize_centrally"]["privacy"], "accounted_by": "broker"}
    charges: dict[str, list[Any]] = {}
    for task in ctx.state.store.tasks_of_job(ctx.job.job_id):
        if task.state != "done":
            continue
        try:
            outcome = TaskOutcome.model_validate_json(task.result_json or b"{}")
        except ValidationError:
            continue
        charges.setdefault(task.supplier, []).extend(outcome.charges)
    try:
        return charges_spent({s: c for s, c in charges.items() if c}, ctx.spec.privacy.delta)
    except ValueError as exc:
        raise StepFailed(f"a supplier reported a privacy charge that cannot be read: {exc}") from (
            exc
        )


def _summary_html(ctx: JobContext, report: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{name}</td><td>{v.get('verdict')}</td>"
        f"<td>{', '.join(v.get('failed_checks') or [])}</td></tr>"
        for name, v in report.get("supplier_verdicts", {}).items()
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{ctx.spec.name}</title></head>"
        f"<body><h1>{ctx.spec.name}: {report['verdict']}</h1><p>Topology "
        f"{ctx.spec.topology.value}; every supplier audited the candidate against its own rows."
        f"</p><table><tr><th>supplier</th><th>verdict</th><th>failed checks</th></tr>{rows}"
        "</table></body></html>"
    )


def release_audited(ctx: JobContext) -> dict[str, Any]:
    """Release the federated candidate only if every supplier's signed verdict passed."""
    candidate = ctx.artifact("candidate")
    step = "audit_candidate"
    datasets = dict.fromkeys(ctx.supplier_results(step), candidate)
    verdicts, reasons, summary = _bound_verdicts(ctx, step, datasets)
    failing = [s for s, v in summary.items() if v["verdict"] != "pass"]
    reasons += [f"supplier {s!r} audit failed: {summary[s]['failed_checks']}" for s in failing]
    report = {
        "verdict": "fail" if reasons else "pass",
        "reasons": reasons,
        "supplier_verdicts": summary,
    }
    return _release(ctx, ctx.stored(candidate), report, verdicts)


def merge_and_release(ctx: JobContext) -> dict[str, Any]:
    """`local`: check each supplier's signed output against the schema, merge, release."""
    schema = ctx.schema()
    step = "synthesize_locally"
    frames, datasets = [], {}
    for supplier, result in sorted(ctx.supplier_results(step).items()):
        data = ctx.upload(supplier, result, "synthetic.parquet")
        datasets[supplier] = result["uploads"]["synthetic.parquet"]
        frame = pd.read_parquet(io.BytesIO(data))
        if list(frame.columns) != schema.names:
            raise StepFailed(
                f"supplier {supplier!r} sent columns {list(frame.columns)}; the common schema "
                f"has {schema.names}"
            )
        frame = conform(frame, schema)
        if ctx.spec.merge_source_column:
            frame[SOURCE_COLUMN] = supplier
        frames.append(frame)
    verdicts, reasons, summary = _bound_verdicts(ctx, step, datasets)
    failing = [s for s, v in summary.items() if v["verdict"] != "pass"]
    reasons += [f"supplier {s!r} audit failed: {summary[s]['failed_checks']}" for s in failing]
    merged = pd.concat(frames, ignore_index=True)
    report = {
        "verdict": "fail" if reasons else "pass",
        "reasons": reasons,
        "supplier_verdicts": summary,
    }
    return _release(ctx, parquet_bytes(merged), report, verdicts)


def synthesize_centrally(ctx: JobContext) -> dict[str, Any]:
    """`central` and `prepared`: pool the rows, fit on a training split, sample, audit."""
    schema = ctx.schema()
    upload_step = "upload_raw" if ctx.spec.topology is Topology.CENTRAL else "upload_prepared"
    frames = []
    results = ctx.supplier_results(upload_step)
    order = [s.supplier for s in ctx.spec.suppliers if s.supplier in results]
    for supplier in order:
        name = "raw.parquet" if upload_step == "upload_raw" else "prepared.parquet"
        frame = pd.read_parquet(io.BytesIO(ctx.upload(supplier, results[supplier], name)))
        if upload_step == "upload_raw":
            frame, _ = prepare(frame, ctx.prep(supplier), ctx.spec.table_schema)
        frames.append(conform(frame, ctx.supplier_schema(supplier)))
        ctx.checkpoint()
    linked = None
    if ctx.spec.vertical:
        pooled = conform(_link(frames)[schema.names], schema)
        linked = len(pooled)
        if linked < 2:
            raise StepFailed(f"only {linked} record(s) link across the suppliers' sources")
    else:
        pooled = pd.concat([f[schema.names] for f in frames], ignore_index=True)
    train, holdout = holdout_split(pooled, ctx.spec.holdout_share, ctx.spec.seed)
    model = synthesizer_class(ctx.spec.synthesizer.name)(**ctx.spec.model_params())
    model.fit(train, schema, progress=ctx.checkpoint)
    candidate = model.sample(ctx.spec.rows, seed=ctx.spec.seed, progress=ctx.checkpoint)
    privacy = None
    if ctx.spec.privacy is not None:
        delta = ctx.spec.privacy.delta
        privacy = {"epsilon": model.privacy_cost_.epsilon_at(delta), "delta": delta}
    report = audit.run(
        train,
        candidate,
        schema,
        holdout=holdout,
        target=ctx.spec.target,
        policy=ctx.spec.audit_policy,
        on_step=ctx.checkpoint,
    )
    artifacts = ctx.state.artifacts
    return {
        "verdict": report.verdict,
        "linked_rows": linked,
        "privacy": privacy,
        "artifacts": {
            "candidate": artifacts.put_bytes(parquet_bytes(candidate)).sha256,
            "report": artifacts.put_bytes(report.to_json().encode()).sha256,
            "report_html": artifacts.put_bytes(render_html(report).encode()).sha256,
        },
    }


def _link(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Join column-split sources on their linkage tokens, one source after another."""
    left = frames[0]
    for right in frames[1:]:
        pairs = Linker().link(left, right).pairs
        attributes = right[[c for c in right.columns if not c.startswith(TOKEN_PREFIXES)]]
        left = pd.concat(
            [
                left.iloc[pairs["left"].to_numpy()].reset_index(drop=True),
                attributes.iloc[pairs["right"].to_numpy()].reset_index(drop=True),
            ],
            axis=1,
        )
    return left


def release_central(ctx: JobContext) -> dict[str, Any]:
    """Release the broker-audited candidate; publish refuses it unless the audit passed."""
    report = json.loads(ctx.stored(ctx.artifact("report")))
    if report["verdict"] != "pass":
        report["reasons"] = [
            f"{c['name']} = {c['value']:.4g}, {c['direction']} {c['threshold']:.4g}"
            for c in report["failed_checks"]
        ]
    return _release(
        ctx,
        ctx.stored(ctx.artifact("candidate")),
        report,
        [],
        html=ctx.stored(ctx.artifact("report_html")),
    )


ACTIONS: dict[str, Callable[[JobContext], dict[str, Any]]] = {
    "merge_marginals": merge_marginals,
    "fit_and_sample": fit_and_sample,
    "release_audited": release_audited,
    "merge_and_release": merge_and_release,
    "synthesize_centrally": synthesize_centrally,
    "release_central": release_central,
}
