"""One handler per task kind: what the agent computes at the site for a step of a plan.

A handler gets the validated task payload and returns what should leave the site: a small JSON
result for the broker and the files to upload. The agent checks the egress policy before a
handler runs, so no handler ever reads data for a task the site refuses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from fedsynth import audit
from fedsynth.audit.html import render_html
from fedsynth.files import atomic_path, atomic_write_bytes, atomic_write_text
from fedsynth.jobs import MAX_ROWS, JobSpec, JobSpecError
from fedsynth.parquet_size import TableTooLarge, bounded_batches, open_dictionary_encoded
from fedsynth.plans import RoundInfo, TaskKind
from fedsynth.prep import PrepSpec, prepare
from fedsynth.prep.report import QuarantineEntry, write_quarantine
from fedsynth.prep.source import rejected_rows
from fedsynth.prep.tokens import LinkageSecret
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.progress import ProgressFactory, Update, no_progress
from fedsynth.schema import TableSchema
from fedsynth.security.attestation import VERDICT_FORMAT, SignedDocument, sign_document
from fedsynth.security.certificates import load_cert, load_key
from fedsynth.splits import holdout_split
from fedsynth.synth import GaussianCopula, SufficientStats, synthesizer_class
from fedsynth.wire.transfer import file_digest
from supplier_agent.audit_bar import site_policy
from supplier_agent.audit_quota import AuditQuota, AuditQuotaExceeded
from supplier_agent.config import AgentConfig, ArtifactKind
from supplier_agent.dp_tasks import DP_HANDLERS, charge, job_budget, job_cost
from supplier_agent.outgoing import OutFile, Outgoing, TaskRefused
from supplier_agent.rows_cache import PreparedRowsCache
from supplier_agent.sources import read_source
from supplier_agent.withheld import check_withheld

AUDIT_QUOTA_FILE = "audits.sqlite3"

EGRESS: dict[TaskKind, ArtifactKind] = {
    TaskKind.MARGINAL_STATS: ArtifactKind.STATISTICS,
    TaskKind.DEPENDENCE_STATS: ArtifactKind.STATISTICS,
    TaskKind.AUDIT_CANDIDATE: ArtifactKind.STATISTICS,
    TaskKind.SYNTHESIZE_LOCALLY: ArtifactKind.SYNTHETIC,
    TaskKind.UPLOAD_PREPARED: ArtifactKind.PREPARED,
    TaskKind.UPLOAD_RAW: ArtifactKind.RAW,
    TaskKind.SECAGG_ANNOUNCE: ArtifactKind.STATISTICS,
    TaskKind.DP_MEASURE: ArtifactKind.STATISTICS,
}


class TaskPayload(BaseModel):
    """What the broker sends with a task: the job, this supplier's row share, fetchable inputs."""

    model_config = ConfigDict(extra="forbid")

    job: JobSpec
    rows: int = Field(ge=0, le=MAX_ROWS, description="Rows this supplier samples in a `local` job.")
    inputs: dict[str, str] = Field(
        default_factory=dict, description="Input name -> SHA-256 of an artifact to fetch."
    )
    dp_round: RoundInfo | None = Field(None, description="The DP round a round task is part of.")


log = logging.getLogger(__name__)


@dataclass
class TaskContext:
    """Everything a handler may use: the agent's config, the task, and artifact fetching."""

    config: AgentConfig
    job_id: str
    task_id: str
    payload: TaskPayload
    workdir: Path
    fetch: Callable[[str, Path], Path]
    rows_cache: PreparedRowsCache = field(default_factory=PreparedRowsCache)
    progress: ProgressFactory = no_progress
    after_report: list[Callable[[], None]] = field(default_factory=list)
    """Site-only work the agent does once the task's result has reached the broker."""
    checkpoint: Callable[[], None] = lambda: None
    """Raises TaskClosed once the broker has closed the task; long work calls it between
    epochs, sample batches and audit stages."""

    @property
    def reports(self) -> Path:
        """Where the site keeps its own audit reports of this task (they stay at the site)."""
        return self.config.state_dir / "reports" / self.task_id

    @property
    def quarantine_path(self) -> Path:
        """Where the site keeps the rows of this job's source that preparation rejected, with
        reasons (they never leave the site)."""
        return self.config.state_dir / "quarantine" / self.job_id / f"{self.source}.csv"

    @property
    def source(self) -> str:
        try:
            return self.payload.job.source_of(self.config.name)
        except JobSpecError as exc:
            raise TaskRefused(str(exc)) from exc

    def schema(self) -> TableSchema:
        """The schema that is modelled: the common one without direct identifiers or tokens."""
        return self.payload.job.model_schema()

    def model_rows(self) -> pd.DataFrame:
        """This site's prepared rows in the modelled schema (linkage tokens left out)."""
        return self.prepared_rows()[self.schema().names]

    def split(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(train, holdout) of this site's rows: the model learns only from train, and the
        holdout gives the audit's privacy checks their baseline. Seeded, so every task of
        the job splits the same way."""
        job = self.payload.job
        return holdout_split(self.model_rows(), job.holdout_share, job.seed)

    def raw_rows(self) -> pd.DataFrame:
        """The source's rows as read, less the columns the site withholds."""
        source = self.config.source(self.source)
        rows = read_source(source)
        return rows.drop(columns=[c for c in source.withheld if c in rows.columns])

    def prepared_rows(self) -> pd.DataFrame:
        """This site's rows of the source, prepared with the job's prep spec for this site
        (once per job: every task of the job works on the same prepared rows)."""
        spec = self.payload.job.prep_for(self.config.name, self.source)
        return self.rows_cache.get(
            self.job_id, self.source, spec.model_dump_json(), lambda: self._prepare(spec)
        )

    def _prepare(self, spec: PrepSpec) -> pd.DataFrame:
        job = self.payload.job
        secret = None
        if spec.linkage is not None:
            if self.config.linkage_secret is None:
                raise TaskRefused(
                    "the job links records, but this agent's config names no linkage_secret"
                )
            secret = LinkageSecret.from_file(self.config.linkage_secret)
        schema = job.schema_for(self.config.name)
        check_withheld(self.config.source(self.source).withheld, spec, schema)
        result = prepare(read_source(self.config.source(self.source)), spec, schema, secret=secret)
        report = result.report
        self.keep_quarantine(result.quarantine)
        if report.rows_out == 0:
            raise TaskRefused(
                f"source {self.source!r}: no row survived preparation "
                f"({report.rows_quarantined} quarantined, {report.duplicates_removed} duplicates); "
                f"the reasons are at the site in {self.quarantine_path}"
            )
        return result.prepared

    def keep_quarantine(self, entries: list[QuarantineEntry]) -> None:
        """Write rejected rows with their reasons to `quarantine_path` (at the site), if any."""
        if not entries:
            return
        write_quarantine(entries, self.quarantine_path)
        log.warning(
            "job %s, source %r: %d rejected cell(s) or line(s), with reasons in %s",
            self.job_id,
            self.source,
            len(entries),
            self.quarantine_path,
        )

    def input(self, name: str, suffix: str) -> Path:
        try:
            sha256 = self.payload.inputs[name]
        except KeyError:
            raise TaskRefused(f"the task carries no {name!r} input") from None
        return self.fetch(sha256, self.workdir / f"{name}{suffix}")

    def sign(self, document: dict[str, Any]) -> SignedDocument:
        tls = self.config.tls
        return sign_document(document, load_key(tls.key), load_cert(tls.cert))


def _write_bytes(path: Path, data: bytes) -> Path:
    atomic_write_bytes(path, data)
    return path


def _write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def _sha256(path: Path) -> str:
    """Hash a file in chunks: synthetic tables can be larger than the memory to spare."""
    return file_digest(path).sha256


def marginal_stats(ctx: TaskContext) -> Outgoing:
    """Round one of the federated copula: counts on the schema's public bins (train rows)."""
    train, _ = ctx.split()
    stats = GaussianCopula().stats(train, ctx.schema())
    path = _write_bytes(ctx.workdir / "marginal-stats.fsa", stats.to_bytes())
    return Outgoing({}, (OutFile(path.name, ArtifactKind.STATISTICS, path),))


def dependence_stats(ctx: TaskContext) -> Outgoing:
    """Round two: score sums against the marginals fitted from everyone's round one."""
    merged = SufficientStats.from_bytes(
        ctx.input("marginal_stats", ".fsa").read_bytes(), source="merged marginal statistics"
    )
    if merged.schema != ctx.schema():
        raise TaskRefused("the merged statistics describe another schema than this job's")
    model = GaussianCopula(**ctx.payload.job.synthesizer.params)
    model.fit_marginals(merged)
    train, _ = ctx.split()
    stats = model.dependence_stats(train)
    path = _write_bytes(ctx.workdir / "dependence-stats.fsa", stats.to_bytes())
    return Outgoing({}, (OutFile(path.name, ArtifactKind.STATISTICS, path),))


def _audit(
    ctx: TaskContext,
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame | None,
) -> audit.AuditReport:
    job = ctx.payload.job
    policy = site_policy(job.audit_policy, ctx.config.egress.min_audit)
    report = audit.run(
        real,
        synthetic,
        ctx.schema(),
        holdout=holdout,
        target=job.target,
        policy=policy,
        constraints=job.constraints(),
        on_step=lambda _stage: ctx.checkpoint(),
    )
    atomic_write_text(ctx.reports / "audit.json", report.to_json())
    # The HTML is for the site's own staff: drawing it need not hold up the job.
    html = ctx.reports / "audit.html"
    ctx.after_report.append(lambda: atomic_write_text(html, render_html(report)))
    return report


def _verdict(ctx: TaskContext, report: audit.AuditReport, dataset_sha256: str) -> dict[str, str]:
    """The site's signed verdict on `dataset_sha256`. A DP job's carries no scores and names no
    failed check: they are exact answers about the site's rows, outside the job's (epsilon,
    delta), and the verdict goes to the broker and into the release's attestation."""
    private = ctx.payload.job.privacy is not None
    document = {
        "format": VERDICT_FORMAT,
        "supplier": ctx.config.name,
        "job_id": ctx.job_id,
        "task_id": ctx.task_id,
        "verdict": report.verdict,
        "dataset_sha256": dataset_sha256,
        "report_sha256": _sha256(ctx.reports / "audit.json"),
        "failed_checks": [] if private else [c.name for c in report.failed_checks],
        "scores": {} if private else report.headline_scores(),
    }
    return ctx.sign(document).to_json()


def audit_candidate(ctx: TaskContext) -> Outgoing:
    """Audit the broker's candidate against this site's rows (training rows, with the holdout
    as baseline) and sign the verdict."""
    path = ctx.input("candidate", ".parquet")
    candidate_sha256 = _sha256(path)
    _check_candidate(path, ctx.payload.job.rows, ctx.config.max_input_bytes)
    egress = ctx.config.egress
    quota = AuditQuota(
        ctx.config.state_dir / AUDIT_QUOTA_FILE,
        per_job=egress.max_audits_per_job,
        per_day=egress.max_audits_per_day,
    )
    try:
        quota.admit(ctx.task_id, ctx.job_id, candidate_sha256)
    except AuditQuotaExceeded as exc:
        raise TaskRefused(str(exc)) from exc
    synthetic = pd.read_parquet(path)
    train, holdout = ctx.split()
    report = _audit(ctx, train, synthetic, holdout)
    return Outgoing({"verdict": _verdict(ctx, report, candidate_sha256)})


def _check_candidate(path: Path, rows: int, max_bytes: int) -> None:
    """Refuse, before the audit quota counts it and before pandas expands it, a candidate that is
    not one of the job's releases: other than `rows` rows (from the footer), or taking more than
    `max_bytes` decoded (a few MB of run-length encoding can declare billions of cells)."""
    try:
        found = open_dictionary_encoded(path)
        if found.metadata.num_rows != rows:
            raise TaskRefused(
                f"the candidate has {found.metadata.num_rows} rows; the job releases {rows}"
            )
        for _ in bounded_batches(found, max_bytes):
            pass
    except TableTooLarge as exc:
        raise TaskRefused(
            f"the candidate: {exc}; this site audits at most {max_bytes} (max_input_bytes)"
        ) from exc
    except (pa.ArrowException, OSError) as exc:
        raise TaskRefused(f"the candidate is not a readable Parquet file: {exc}") from exc


def synthesize_locally(ctx: TaskContext) -> Outgoing:
    """Fit, sample and audit here; only output that clears the site's audit bar leaves. A DP
    job's whole budget is charged before the fit: the audit's outcome depends on the rows too,
    so a fit whose output fails it is paid for, and resubmitting the job is never free."""
    job = ctx.payload.job
    schema = ctx.schema()
    book = job_budget(ctx)
    train, holdout = ctx.split()
    charges = _charge_job(ctx, book)
    model = synthesizer_class(job.synthesizer.name)(**job.model_params())
    with ctx.progress(f"fitting {job.synthesizer.name} for job {ctx.job_id}") as update:
        model.fit(train, schema, progress=_watched(ctx, update))
    synthetic = model.sample(
        ctx.payload.rows, seed=job.seed, progress=lambda _done, _total: ctx.checkpoint()
    )
    report = _audit(ctx, train, synthetic, holdout)
    if report.verdict != "pass":
        raise TaskRefused(_audit_refusal(ctx, report))
    path = _write_parquet(ctx.workdir / "synthetic.parquet", synthetic)
    sha256 = _sha256(path)
    return Outgoing(
        {"verdict": _verdict(ctx, report, sha256), "rows": len(synthetic), "charges": charges},
        (OutFile(path.name, ArtifactKind.SYNTHETIC, path, sha256),),
    )


def _audit_refusal(ctx: TaskContext, report: audit.AuditReport) -> str:
    """Why the site sends nothing after its own audit failed. A DP job's refusal names no check:
    which ones failed is a further, unnoised answer about the site's rows."""
    if ctx.payload.job.privacy is None:
        failed = ", ".join(c.name for c in report.failed_checks)
        return f"this site's synthetic output failed its own audit ({failed}); nothing was sent"
    return (
        "this site's synthetic output failed its own audit; nothing was sent, and the job's "
        "privacy budget stays charged. The checks are in the site's audit report, kept at the "
        f"site under its state_dir in reports/{ctx.task_id}/audit.json"
    )


def _watched(ctx: TaskContext, update: Update) -> Callable[[int, int], None]:
    """A fit's progress callback: moves the bar and stops the fit once the task is closed."""

    def progress(done: int, total: int) -> None:
        update(done, total)
        ctx.checkpoint()

    return progress


def upload_prepared(ctx: TaskContext) -> Outgoing:
    """Prepared rows (identifiers replaced by linkage tokens) for synthesis at the broker."""
    book = job_budget(ctx)
    path = _write_parquet(ctx.workdir / "prepared.parquet", ctx.prepared_rows())
    return Outgoing(
        {"charges": _charge_job(ctx, book)}, (OutFile(path.name, ArtifactKind.PREPARED, path),)
    )


def upload_raw(ctx: TaskContext) -> Outgoing:
    """The source's rows as read, for preparation at the broker; lines that are not records
    (blank, wrong number of fields) stay in the site's quarantine."""
    book = job_budget(ctx)
    rows = ctx.raw_rows()
    ctx.keep_quarantine(rejected_rows(rows))
    rows.attrs = {}
    path = _write_parquet(ctx.workdir / "raw.parquet", rows)
    return Outgoing(
        {"charges": _charge_job(ctx, book)}, (OutFile(path.name, ArtifactKind.RAW, path),)
    )


def _charge_job(ctx: TaskContext, book: PrivacyLedger | None) -> list[dict[str, Any]]:
    """A DP job that models these rows in one fit (at the broker, or here in `local`) costs this
    source the job's whole budget: charged before the rows leave or the fit starts, under the
    task's id so a retried task is charged once; nothing without DP."""
    if book is None:
        return []
    return [charge(ctx, book, job_cost(ctx)).model_dump(mode="json")]


HANDLERS: dict[TaskKind, Callable[[TaskContext], Outgoing]] = {
    TaskKind.MARGINAL_STATS: marginal_stats,
    TaskKind.DEPENDENCE_STATS: dependence_stats,
    TaskKind.AUDIT_CANDIDATE: audit_candidate,
    TaskKind.SYNTHESIZE_LOCALLY: synthesize_locally,
    TaskKind.UPLOAD_PREPARED: upload_prepared,
    TaskKind.UPLOAD_RAW: upload_raw,
    **DP_HANDLERS,
}


def save_outgoing(path: Path, outgoing: Outgoing) -> None:
    """Persist a finished handler's output so a restarted agent resends the same bytes."""
    files = [
        {"name": f.name, "kind": f.kind.value, "path": str(f.path), "sha256": f.sha256}
        for f in outgoing.files
    ]
    atomic_write_text(path, json.dumps({"result": outgoing.result, "files": files}))


def load_outgoing(path: Path) -> Outgoing:
    data = json.loads(path.read_text("utf-8"))
    files = tuple(
        OutFile(f["name"], ArtifactKind(f["kind"]), Path(f["path"]), f.get("sha256", ""))
        for f in data["files"]
    )
    return Outgoing(data["result"], files)
