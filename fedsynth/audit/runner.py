"""`run`: audit a synthetic table against the real rows it was made from, and judge it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from rich.progress import Progress
from threadpoolctl import threadpool_limits

from fedsynth.audit.attribute import attribute_disclosure
from fedsynth.audit.coverage import coverage
from fedsynth.audit.detection import detection
from fedsynth.audit.disclosure import (
    distance_to_closest_record,
    identity_disclosure,
    membership_inference,
    quasi_identifier_membership,
)
from fedsynth.audit.encoding import MixedEmbedding
from fedsynth.audit.fidelity import fidelity
from fedsynth.audit.policy import AuditPolicy
from fedsynth.audit.report import AuditReport, PrivacyReport, RowCounts
from fedsynth.audit.singling_out import singling_out
from fedsynth.audit.utility import utility
from fedsynth.audit.validity import (
    ConstraintCheck,
    ConstraintFunction,
    audited_schema,
    check_frame,
    declared_checks,
    identifiers_note,
    rejection_summary,
    require_valid,
    synthetic_schema,
    validity,
)
from fedsynth.audit.verdict import Sections, evaluate
from fedsynth.io import ValidationReport
from fedsynth.schema import Column, PrivacyRole, TableSchema
from fedsynth.synth.constraints import ConstraintBase

Constraints = (
    Iterable[ConstraintCheck | tuple[str, ConstraintFunction] | ConstraintBase]
    | Mapping[str, ConstraintFunction]
)
MIN_ROWS = 10
STEPS = ("validity", "fidelity", "detection", "utility", "privacy", "coverage")


def run(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    holdout: pd.DataFrame | None = None,
    target: str | None = None,
    policy: AuditPolicy | None = None,
    constraints: Constraints | None = None,
    synthetic_rejected: ValidationReport | None = None,
    progress: bool = False,
    on_step: Callable[[str], None] | None = None,
    n_jobs: int = 1,
) -> AuditReport:
    """Measure `synthetic` against the training rows `real` (and an unseen `holdout`), judge it.

    `constraints` are named row predicates (see `ConstraintCheck`) or a synthesizer's declared
    constraints (as a job's `constraints()`, see `declared_checks`); `synthetic_rejected` is the
    validation report of the synthetic file when its bad rows were quarantined on reading, so
    they still count as invalid. Without a holdout, utility, overfitting and membership inference
    are not measured and privacy rates are judged without a baseline. `n_jobs` caps the threads
    of model fits and neighbour searches (-1: all cores); one thread is fastest on a machine
    shared with other work, where OpenMP threads wait on each other. `on_step` is called with
    each stage's name as it starts; an exception it raises ends the audit there.
    """
    policy = policy or AuditPolicy()
    rng = np.random.default_rng(policy.seed)
    columns = schema.modelled_columns
    if not columns:
        raise ValueError(
            f"schema {schema.name!r} has no modelled column (only identifiers and text); "
            "there is nothing to audit"
        )
    audited, left_out = audited_schema(schema)
    notes = [identifiers_note(left_out)] if left_out else []
    target_column = _target(schema, target)
    threads = None if n_jobs == -1 else n_jobs
    with threadpool_limits(limits=threads), _steps(progress, on_step) as step:
        step("validity")
        real_t = _real_frame(real, audited, "real (training) table")
        holdout_t = None if holdout is None else _real_frame(holdout, audited, "holdout table")
        syn_schema = synthetic_schema(audited)
        checked = check_frame(synthetic, syn_schema, label="synthetic table")
        if len(checked.frame) < MIN_ROWS:
            raise ValueError(_too_few_synthetic(len(checked.frame), syn_schema, synthetic_rejected))
        valid = validity(
            checked,
            syn_schema,
            _constraint_list(constraints, audited, real_t),
            rejected=synthetic_rejected,
        )
        syn_t = checked.frame
        step("fidelity")
        fid = fidelity(real_t, syn_t, columns)
        step("detection")
        det = detection(
            real_t,
            syn_t,
            columns,
            max_rows=policy.detection_rows,
            seed=policy.seed,
            notes=notes,
        )
        step("utility")
        util = None
        if target_column is None:
            notes.append("utility not measured: no target column was named")
        elif holdout_t is None:
            notes.append(f"utility for target {target!r} needs a holdout table; not measured")
        else:
            util = utility(
                real_t,
                syn_t,
                holdout_t,
                columns,
                target_column,
                max_rows=policy.utility_rows,
                seed=policy.seed,
                notes=notes,
            )
        step("privacy")
        privacy = _privacy(real_t, syn_t, holdout_t, schema, policy, rng, notes)
        step("coverage")
        cov = coverage(real_t, syn_t, columns, rare_share=policy.rare_share)
    sections = Sections(fid, det, util, privacy, cov, valid)
    checks, skipped = evaluate(sections, policy)
    failed = [c for c in checks if not c.passed]
    return AuditReport(
        verdict="fail" if failed else "pass",
        failed_checks=failed,
        checks=checks,
        schema_name=schema.name,
        created_at=datetime.now(UTC),
        rows=RowCounts(
            real=len(real_t),
            synthetic=valid.rows,
            holdout=None if holdout_t is None else len(holdout_t),
        ),
        target=target,
        policy=policy,
        fidelity=fid,
        detection=det,
        utility=util,
        privacy=privacy,
        coverage=cov,
        validity=valid,
        notes=notes + skipped,
    )


def _privacy(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame | None,
    schema: TableSchema,
    policy: AuditPolicy,
    rng: np.random.Generator,
    notes: list[str],
) -> PrivacyReport:
    columns = schema.modelled_columns
    quasi = [c for c in columns if c.role is PrivacyRole.QUASI_IDENTIFIER]
    sensitive = [c for c in columns if c.role is PrivacyRole.SENSITIVE]
    if not quasi:
        notes.append(
            "no column has role quasi_identifier: identity disclosure, exact quasi-identifier "
            "membership and singling out use every modelled column; attribute disclosure is not "
            "measured"
        )
    elif not sensitive:
        notes.append("no column has role sensitive: attribute disclosure is not measured")
    frames = (synthetic,) if holdout is None else (synthetic, holdout)
    embedding = MixedEmbedding(columns).fit(train, *frames)
    distance = distance_to_closest_record(
        train,
        synthetic,
        holdout,
        embedding,
        max_queries=policy.distance_rows,
        max_reference=policy.reference_rows,
        rng=rng,
    )
    membership = None
    if holdout is not None:
        membership = membership_inference(
            train,
            synthetic,
            holdout,
            embedding,
            max_queries=policy.distance_rows,
            max_reference=policy.reference_rows,
            rng=rng,
        )
    attributes = [
        attribute_disclosure(
            train,
            synthetic,
            holdout,
            quasi,
            column,
            bins=policy.quasi_identifier_bins,
            max_records=policy.distance_rows,
            rng=rng,
        )
        for column in (sensitive if quasi else [])
    ]
    return PrivacyReport(
        identity=identity_disclosure(train, synthetic, holdout, columns, quasi or columns, rng),
        distance=distance,
        membership=membership,
        attribute=attributes,
        singling_out=singling_out(
            train,
            synthetic,
            holdout,
            quasi or columns,
            predicates=policy.singling_out_predicates,
            max_reference=policy.reference_rows,
            rng=rng,
        ),
        quasi_identifier_membership=quasi_identifier_membership(
            train,
            synthetic,
            holdout,
            quasi or columns,
            max_rows=policy.reference_rows,
            rng=rng,
        ),
    )


def _target(schema: TableSchema, target: str | None) -> Column | None:
    if target is None:
        return None
    try:
        column = schema.column(target)
    except KeyError as exc:
        raise ValueError(f"target: {exc.args[0]}") from exc
    if not column.modelled:
        raise ValueError(
            f"target {target!r} has kind {column.kind!r}, which is never modelled; "
            "choose a numerical, datetime, categorical or boolean column"
        )
    return column


def _too_few_synthetic(rows: int, schema: TableSchema, rejected: ValidationReport | None) -> str:
    """Why the synthetic table cannot be audited: its row count and the commonest rejections."""
    message = f"synthetic table has {rows} valid row(s); an audit needs at least {MIN_ROWS}"
    if rejected is None or not rejected.rows_quarantined:
        return message
    return (
        f"{message}. {rejected.rows_quarantined} row(s) broke the schema, most often: "
        f"{rejection_summary(rejected, schema)}. Fix: audit a synthetic table made for schema "
        f"{schema.name!r} (fedsynth validate lists every rejected row)"
    )


def _real_frame(df: pd.DataFrame, schema: TableSchema, label: str) -> pd.DataFrame:
    frame = require_valid(check_frame(df, schema, label=label), schema, label=label)
    if len(frame) < MIN_ROWS:
        raise ValueError(f"{label} has {len(frame)} row(s); an audit needs at least {MIN_ROWS}")
    return frame


def _constraint_list(
    constraints: Constraints | None, schema: TableSchema, real: pd.DataFrame
) -> list[ConstraintCheck]:
    if constraints is None:
        return []
    if isinstance(constraints, Mapping):
        return [ConstraintCheck(name, check) for name, check in constraints.items()]
    items = list(constraints)
    declared = declared_checks([c for c in items if isinstance(c, ConstraintBase)], schema, real)
    named = [
        c if isinstance(c, ConstraintCheck) else ConstraintCheck(*c)
        for c in items
        if not isinstance(c, ConstraintBase)
    ]
    return named + declared


@contextmanager
def _steps(show: bool, on_step: Callable[[str], None] | None) -> Iterator[Callable[[str], None]]:
    """A callback naming each audit step as it starts, drawn as a rich progress bar if `show`
    and passed on to `on_step`."""
    notify = on_step or (lambda _name: None)
    if not show:
        yield notify
        return
    with Progress(transient=True) as bar:
        task = bar.add_task("audit", total=len(STEPS))
        started = [False]

        def step(name: str) -> None:
            notify(name)
            if started[0]:
                bar.advance(task)
            started[0] = True
            bar.update(task, description=f"audit: {name}")

        yield step
        bar.advance(task)
