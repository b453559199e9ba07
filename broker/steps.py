"""The broker's actions in topology plans: merge, fit, sample, audit and release.

Each action reads what earlier steps recorded (supplier results, artifact hashes), writes its
outputs to the content-addressed artifact store, and returns a JSON result that the orchestrator
persists, so a restarted broker resumes after the last finished step.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import reduce
from html import escape
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from broker.config import LimitsConfig
from broker.releases import ReleaseRefused, charges_spent, publish
from broker.state import BrokerState
from broker.store import JobRow, age_s
from fedsynth import audit
from fedsynth.arrow_text import as_text
from fedsynth.audit.html import render_html
from fedsynth.audit.validity import check_frame, require_valid, synthetic_schema
from fedsynth.frame import conform
from fedsynth.io import to_pandas
from fedsynth.jobs import JobSpec, JobState, Topology
from fedsynth.parquet_size import TableTooLarge, bounded_batches, is_text
from fedsynth.plans import RoundInfo, TaskOutcome
from fedsynth.prep import PrepSpec, output_schema
from fedsynth.prep import run as prepare
from fedsynth.prep.harmonize import TOKEN_PREFIXES
from fedsynth.prep.linker import Linker
from fedsynth.schema import TableSchema
from fedsynth.security.attestation import SignedDocument
from fedsynth.splits import holdout_split
from fedsynth.synth import GaussianCopula, SufficientStats, synthesizer_class
from fedsynth.synth.artifact import ArtifactError
from fedsynth.validation import Rule, UnsupportedStorage, describe, validate_column
from fedsynth.wire.v1 import supplier_pb2

SOURCE_COLUMN = "source"
CHECK_S = 0.25
STATISTICS = supplier_pb2.UPLOAD_KIND_STATISTICS


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
        return self.state.config.uri

    def table_limits(self) -> TableLimits:
        """How much of one supplier's table this broker takes."""
        return TableLimits.of(self.state.config.limits)

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

    def upload(self, supplier: str, result: dict[str, Any], name: str, kind: int) -> bytes:
        """The bytes `supplier` uploaded as `name` of upload `kind` for this job.

        Only a complete upload of that kind counts (raw rows sent as statistics would skip the
        encryption at rest and the end-of-job purge), and its bytes must still hash to its name.
        """
        sha256 = result.get("uploads", {}).get(name)
        expected = supplier_pb2.UploadKind.Name(kind)
        rows = [
            u
            for u in self.state.store.uploads_of_job(self.job.job_id)
            if u.supplier == supplier and u.sha256 == sha256 and u.state == "complete"
        ]
        if sha256 is None or not rows:
            raise StepFailed(f"supplier {supplier!r} reported {name!r} but no such upload exists")
        right = [u for u in rows if u.kind == expected]
        if not right:
            raise StepFailed(
                f"supplier {supplier!r} uploaded {name!r} as {rows[0].kind}; this step takes "
                f"only {expected}"
            )
        if right[0].encrypted:
            data = b"".join(self.state.artifacts.read_encrypted(sha256))
        else:
            data = self.state.artifacts.path(sha256).read_bytes()
        return _verified(data, sha256, f"supplier {supplier!r}'s upload {name!r}")

    def stored(self, sha256: str, what: str = "the stored artifact") -> bytes:
        """An artifact's bytes, refused unless they still hash to its name."""
        data = self.state.artifacts.path(sha256).read_bytes()
        return _verified(data, sha256, what)


def _verified(data: bytes, sha256: str, what: str) -> bytes:
    """`data`, read once from the artifact store, if it hashes to `sha256`; StepFailed if not.

    Hashing the very bytes that are then used leaves no window in which the file could change
    between the check and the use."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise StepFailed(
            f"{what} {sha256} was altered on the broker's disk (its bytes hash to {actual}); "
            "nothing derived from it is used or released"
        )
    return data


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """A table as Parquet bytes, for the artifact store."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@dataclass(frozen=True)
class TableLimits:
    """How much of one supplier's table the broker takes (`limits.max_supplier_rows` and
    `limits.max_supplier_table_bytes`). The broker pools the tables in memory, so a Parquet
    file that declares more rows (a few kB of run-length encoding can declare millions) is
    refused from its footer, before any row is decoded; the bytes are counted decoded (text
    cells at their full length), from the footer first, then batch by batch before dictionaries
    expand."""

    rows: int
    bytes: int

    @classmethod
    def of(cls, limits: LimitsConfig) -> TableLimits:
        return cls(limits.max_supplier_rows, limits.max_supplier_table_bytes)


def _open_parquet(
    label: str,
    data: bytes,
    allowed: list[str] | None,
    limits: TableLimits,
    rows: int | None = None,
) -> pq.ParquetFile:
    """A supplier's Parquet file, refused from its footer alone: other than `rows` rows (when
    given) or more than `limits.rows`, columns outside `allowed` (None: any), nested columns,
    or more than `limits.bytes` uncompressed.

    Text columns are opened dictionary-encoded, so no cell is expanded before `_batches` has
    counted what it would take."""
    try:
        found = pq.ParquetFile(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise StepFailed(f"{label}: not a readable Parquet file: {exc}") from exc
    meta, columns = found.metadata, found.schema_arrow
    if rows is not None and meta.num_rows != rows:
        raise StepFailed(f"{label}: the file has {meta.num_rows} rows; the job asked for {rows}")
    if meta.num_rows > limits.rows:
        raise StepFailed(
            f"{label}: the file declares {meta.num_rows} rows; at most {limits.rows} are taken "
            "from one supplier (the broker's limits.max_supplier_rows)"
        )
    undeclared = [n for n in columns.names if allowed is not None and n not in allowed]
    if undeclared:
        raise StepFailed(
            f"{label}: columns the job does not declare {undeclared}; declared: {allowed}"
        )
    repeated = sorted({n for n in columns.names if columns.names.count(n) > 1})
    if repeated:
        raise StepFailed(f"{label}: columns {repeated} appear more than once")
    nested = [f.name for f in columns if pa.types.is_nested(f.type)]
    if nested:
        raise StepFailed(f"{label}: columns {nested} hold nested values; cells hold one value")
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if size > limits.bytes:
        raise StepFailed(
            f"{label}: the file takes {size} bytes uncompressed; at most {limits.bytes} (the "
            "broker's limits.max_supplier_table_bytes)"
        )
    texts = [f.name for f in columns if is_text(f.type)]
    return pq.ParquetFile(io.BytesIO(data), read_dictionary=texts)


def _batches(label: str, found: pq.ParquetFile, limits: TableLimits) -> Iterator[pa.RecordBatch]:
    """The file's rows in batches, refused once they would take more than `limits.bytes`
    decoded (a dictionary of one long value repeated on every row is counted at full length)."""
    try:
        yield from bounded_batches(found, limits.bytes)
    except TableTooLarge as exc:
        raise StepFailed(f"{label}: {exc} (the broker's limits.max_supplier_table_bytes)") from exc
    if found.metadata.num_rows == 0:
        yield pa.RecordBatch.from_pylist([], schema=found.schema_arrow)


def read_supplier_table(
    label: str, data: bytes, schema: TableSchema, limits: TableLimits, rows: int | None = None
) -> pd.DataFrame:
    """A supplier's table (of exactly `rows` rows when given), read only if every cell is valid
    under `schema`.

    Cells are judged by `fedsynth.validation`, the rules `fedsynth validate` applies to files;
    one invalid cell fails the step (reason: the column, how many cells and the rule) rather
    than dropping the row, since a supplier that sends invalid rows is not to be trusted with
    the rest of the table either."""
    found = _open_parquet(label, data, schema.names, limits, rows)
    missing = [n for n in schema.names if n not in found.schema_arrow.names]
    if missing:
        raise StepFailed(f"{label}: the schema's columns {missing} are missing")
    typed: list[pa.RecordBatch] = []
    broken: dict[str, Counter[Rule]] = {}
    for batch in _batches(label, found, limits):
        arrays = []
        for column in schema.columns:
            try:
                result = validate_column(batch.column(column.name), column)
            except UnsupportedStorage as exc:
                raise StepFailed(f"{label}: column {column.name!r} is {exc}") from exc
            codes = result.codes[result.codes != 0]
            if len(codes):
                broken.setdefault(column.name, Counter()).update(Rule(int(c)) for c in codes)
            arrays.append(result.values)
        typed.append(pa.RecordBatch.from_arrays(arrays, names=schema.names))
    if broken:
        raise StepFailed(
            f"{label}: "
            + "; ".join(
                f"column {name!r}: "
                + ", ".join(
                    f"{n} value(s) {describe(rule, schema.column(name))}"
                    for rule, n in sorted(rules.items())
                )
                for name, rules in broken.items()
            )
        )
    return to_pandas(pa.Table.from_batches(typed), schema)


def read_raw_rows(
    label: str, data: bytes, allowed: list[str] | None, limits: TableLimits
) -> pd.DataFrame:
    """A supplier's raw rows as the text the prep pipeline takes (None for empty cells), as the
    supplier agent sends them; a column stored as anything but text is refused, naming it."""
    found = _open_parquet(label, data, allowed, limits)
    typed = []
    for f in found.schema_arrow:
        stored = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        if not (is_text(stored) or pa.types.is_null(stored)):
            typed.append(f"{f.name!r} ({stored})")
    if typed:
        raise StepFailed(f"{label}: columns {', '.join(typed)} are not text; raw rows are text")
    names = found.schema_arrow.names
    columns: dict[str, list[Any]] = {n: [] for n in names}
    for batch in _batches(label, found, limits):
        for name, array in zip(names, batch.columns, strict=True):
            columns[name].extend(as_text(array).to_pylist())
    return pd.DataFrame(columns, dtype=object)


def _asked_rows(ctx: JobContext, supplier: str, kind: str) -> int:
    """The rows the broker asked `supplier` for in its finished `kind` task (its share)."""
    for task in ctx.state.store.tasks_of_job(ctx.job.job_id):
        if task.supplier == supplier and task.kind == kind and task.state == "done":
            return int(json.loads(task.payload_json)["rows"])
    raise StepFailed(f"supplier {supplier!r} has no finished {kind} task in this job")


def _stats(ctx: JobContext, step: str, name: str) -> SufficientStats:
    """The suppliers' statistics of `step`, merged. Each may count at most the rows the broker
    takes from one supplier's table (limits.max_supplier_rows): a site claiming more would
    outweigh the others in the merge."""
    try:
        parts = [
            SufficientStats.from_bytes(
                ctx.upload(s, r, name, STATISTICS),
                source=f"{s}'s {step}",
                schema=ctx.schema(),
                max_rows=ctx.table_limits().rows,
            )
            for s, r in sorted(ctx.supplier_results(step).items())
        ]
    except ArtifactError as exc:
        raise StepFailed(str(exc)) from exc
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
    rows = {c.count + c.null_count for c in marginal.columns.values()}
    counted = dependence.dependence.n if dependence.dependence is not None else None
    if counted is not None and rows and counted not in rows:
        raise StepFailed(
            f"the suppliers' dependence statistics count {counted:g} rows but their marginal "
            f"statistics {min(rows):g}: a supplier's two rounds disagree"
        )
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
    audited_sha256: str | None = None,
) -> dict[str, Any]:
    report_json = json.dumps(report, sort_keys=True, default=str).encode()
    page = _summary_html(ctx, report).encode()
    with ctx.state.ending_held(ctx.job.job_id) as running:
        if not running:
            state = ctx.state.store.job(ctx.job.job_id).state
            raise StepFailed(
                f"job {ctx.job.job_id} is {state} (changed while it ran): nothing released"
            )
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
                audited_sha256=audited_sha256,
                schema=_released_schema(ctx),
            )
        except ReleaseRefused as exc:
            raise StepFailed(f"release refused: {'; '.join(exc.reasons)}") from exc
    return {"release_id": published.release_id, "candidate_id": published.candidate_id}


def _released_schema(ctx: JobContext) -> dict[str, Any]:
    """The released table's schema: the modelled one, and the supplier of each row where a
    local job adds it."""
    schema = ctx.schema().to_dict()
    if ctx.spec.topology is Topology.LOCAL and ctx.spec.merge_source_column:
        schema["columns"].append(
            {
                "name": SOURCE_COLUMN,
                "kind": "categorical",
                "domain": [s.supplier for s in ctx.spec.suppliers],
                "description": "The supplier whose local model made the row.",
            }
        )
    return schema


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


SUMMARY_SCORES = (
    "fidelity",
    "column_shapes",
    "pair_trends",
    "boundary_adherence",
    "detection_auc",
    "utility_ratio",
)


def _summary_html(ctx: JobContext, report: dict[str, Any]) -> str:
    """The release's audit page: the verdict, and the verdict, failed checks and headline scores
    of each party that audited (each site against its own rows, or the broker against the pooled
    rows); a DP job's show no scores, which are exact statistics of real rows. Plots and
    distributions of real rows stay with whoever holds them. Every text from the job spec or a
    supplier is escaped: the page is served to consumers."""
    audits = dict(report.get("supplier_verdicts", {}))
    if "broker_audit" in report:
        audits["broker"] = report["broker_audit"]
        how = (
            "the broker audited the candidate against the pooled rows. Plots and distributions "
            "of those rows stay at the broker."
        )
    else:
        how = (
            "every supplier audited the candidate against its own rows and signed its verdict. "
            "Plots and distributions of a site's rows stay at that site."
        )
    private = ctx.spec.privacy is not None
    if private:
        how += " A DP job's audits show no scores: they are exact statistics of real rows."
    keys = () if private else SUMMARY_SCORES
    heads = "".join(f"<th>{name}</th>" for name in keys)
    rows = []
    for name, verdict in audits.items():
        scores = verdict.get("scores") or {}
        cells = "".join(f"<td>{_score(scores.get(key))}</td>" for key in keys)
        failed = ", ".join(str(c) for c in verdict.get("failed_checks") or [])
        rows.append(
            f"<tr><td>{escape(str(name))}</td><td>{escape(str(verdict.get('verdict')))}</td>"
            f"{cells}<td>{escape(failed)}</td></tr>"
        )
    reasons = "".join(f"<li>{escape(str(r))}</li>" for r in report.get("reasons", []))
    title = escape(ctx.spec.name)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}: {escape(str(report['verdict']))}</h1><p>Topology "
        f"{ctx.spec.topology.value}; {how}</p><table><tr><th>audited by</th><th>verdict</th>"
        f"{heads}<th>failed checks</th></tr>{''.join(rows)}</table>"
        f"{f'<ul>{reasons}</ul>' if reasons else ''}</body></html>"
    )


def _audit_failure(supplier: str, verdict: dict[str, Any]) -> str:
    """Why a site's audit failed, as far as its signed verdict says: the checks' names (their
    values stay at the site, where its operator reads them in the site's audit report)."""
    checks = ", ".join(map(str, verdict.get("failed_checks") or [])) or (
        "a DP job's verdicts name no check"
    )
    return (
        f"supplier {supplier!r} audit failed ({checks}); the values and thresholds are in that "
        "site's audit report, kept at the site"
    )


def _score(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def release_audited(ctx: JobContext) -> dict[str, Any]:
    """Release the federated candidate only if every supplier's signed verdict passed."""
    candidate = ctx.artifact("candidate")
    step = "audit_candidate"
    datasets = dict.fromkeys(ctx.supplier_results(step), candidate)
    verdicts, reasons, summary = _bound_verdicts(ctx, step, datasets)
    failing = [s for s, v in summary.items() if v["verdict"] != "pass"]
    reasons += [_audit_failure(s, summary[s]) for s in failing]
    report = {
        "verdict": "fail" if reasons else "pass",
        "reasons": reasons,
        "supplier_verdicts": summary,
    }
    return _release(
        ctx,
        ctx.stored(candidate, "the audited candidate"),
        report,
        verdicts,
        audited_sha256=candidate,
    )


def merge_and_release(ctx: JobContext) -> dict[str, Any]:
    """`local`: check each supplier's signed output against the schema, merge, release.

    A synthetic part must hold exactly the rows the broker asked that supplier for (and said it
    sent), every cell valid under the schema (text columns may be empty, as in any synthetic
    table); the job fails, naming the supplier, on any departure."""
    schema = synthetic_schema(ctx.schema())
    step = "synthesize_locally"
    frames, datasets = [], {}
    for supplier, result in sorted(ctx.supplier_results(step).items()):
        data = ctx.upload(supplier, result, "synthetic.parquet", supplier_pb2.UPLOAD_KIND_SYNTHETIC)
        datasets[supplier] = result["uploads"]["synthetic.parquet"]
        share = _asked_rows(ctx, supplier, step)
        if result.get("rows") != share:
            raise StepFailed(
                f"{supplier}'s synthetic part: it reported {result.get('rows')} rows; the job "
                f"asked it for {share}"
            )
        label = f"{supplier}'s synthetic part"
        frame = read_supplier_table(label, data, schema, ctx.table_limits(), rows=share)
        if ctx.spec.merge_source_column:
            frame[SOURCE_COLUMN] = supplier
        frames.append(frame)
    verdicts, reasons, summary = _bound_verdicts(ctx, step, datasets)
    failing = [s for s, v in summary.items() if v["verdict"] != "pass"]
    reasons += [_audit_failure(s, summary[s]) for s in failing]
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
        if upload_step == "upload_raw":
            frame = _prepared_raw_rows(ctx, supplier, results[supplier])
        else:
            data = ctx.upload(
                supplier, results[supplier], "prepared.parquet", supplier_pb2.UPLOAD_KIND_PREPARED
            )
            label = f"{supplier}'s prepared rows"
            frame = read_supplier_table(
                label, data, ctx.supplier_schema(supplier), ctx.table_limits()
            )
        frames.append(frame)
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
        constraints=ctx.spec.constraints(),
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


def _prepared_raw_rows(ctx: JobContext, supplier: str, result: dict[str, Any]) -> pd.DataFrame:
    """`supplier`'s raw rows, prepared here as its site would have.

    Rows the preparation quarantines are left out, as they would be at the site; what comes out
    is then held to the same cell rules as uploaded prepared rows. A preparation that cannot run
    on the rows fails the job, naming the supplier."""
    prep = ctx.prep(supplier)
    label = f"{supplier}'s raw rows"
    data = ctx.upload(supplier, result, "raw.parquet", supplier_pb2.UPLOAD_KIND_RAW)
    # A site sends its source as it is: columns its prep spec derives from, or never names,
    # are read and left to preparation, which keeps only the schema's.
    raw = read_raw_rows(label, data, None, ctx.table_limits())
    try:
        frame, _ = prepare(raw, prep, ctx.spec.table_schema)
    except Exception as exc:
        raise StepFailed(f"{label} could not be prepared: {exc}") from exc
    schema = ctx.supplier_schema(supplier)
    try:
        checked = check_frame(frame, schema, label=f"{label} after preparation")
        return require_valid(checked, schema, label=f"{label} after preparation")
    except ValueError as exc:
        raise StepFailed(str(exc)) from exc


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
    """Release the broker-audited candidate; publish refuses it unless the audit passed.

    Consumers get the audit's summary: its verdict, the checks it failed and, without DP, its
    headline scores. The full report and its page describe the pooled real rows (their ranges,
    histograms and correlations, none of it noised), so they stay in the broker's store.
    """
    full = audit.AuditReport.from_json(
        ctx.stored(ctx.artifact("report")), source="the broker's audit report"
    )
    summary: dict[str, Any] = {
        "verdict": full.verdict,
        "failed_checks": [c.name for c in full.failed_checks],
    }
    if ctx.spec.privacy is None:
        summary["scores"] = full.headline_scores()
    report: dict[str, Any] = {"verdict": full.verdict, "broker_audit": summary}
    if full.verdict != "pass":
        report["reasons"] = [
            f"{c.name} = {c.value:.4g}, {c.direction} {c.threshold:.4g}" for c in full.failed_checks
        ]
    return _release(
        ctx,
        ctx.stored(ctx.artifact("candidate"), "the audited candidate"),
        report,
        [],
        audited_sha256=ctx.artifact("candidate"),
    )


ACTIONS: dict[str, Callable[[JobContext], dict[str, Any]]] = {
    "merge_marginals": merge_marginals,
    "fit_and_sample": fit_and_sample,
    "release_audited": release_audited,
    "merge_and_release": merge_and_release,
    "synthesize_centrally": synthesize_centrally,
    "release_central": release_central,
}
