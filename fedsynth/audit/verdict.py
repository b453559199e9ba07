"""Turn measurements into checks against the policy's thresholds, and checks into a verdict.

A check whose value could not be measured (no holdout, no target, no rare category) is left out
and the reason is listed in the report's notes. Privacy rates use the holdout as baseline when
there is one: the value checked is then the training rate minus the holdout rate, and the check's
`measure` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedsynth.audit.policy import AuditPolicy
from fedsynth.audit.report import (
    CheckResult,
    CoverageReport,
    DetectionReport,
    FidelityReport,
    PrivacyReport,
    UtilityReport,
    ValidityReport,
)

EXCESS = "training rate minus holdout rate (excess over people never seen)"


@dataclass(frozen=True)
class Sections:
    """The measured parts of a report that the policy judges."""

    fidelity: FidelityReport
    detection: DetectionReport
    utility: UtilityReport | None
    privacy: PrivacyReport
    coverage: CoverageReport
    validity: ValidityReport


def evaluate(sections: Sections, policy: AuditPolicy) -> tuple[list[CheckResult], list[str]]:
    """Every check that could be made, and a note for each that could not."""
    checks: list[CheckResult] = []
    notes: list[str] = []

    def check(
        name: str,
        value: float | None,
        threshold: float,
        direction: Literal["min", "max"],
        explanation: str,
        missing: str,
        measure: str | None = None,
    ) -> None:
        if value is None:
            notes.append(f"{name} not checked: {missing}")
            return
        passed = value >= threshold if direction == "min" else value <= threshold
        checks.append(
            CheckResult(
                name=name,
                value=value,
                threshold=threshold,
                direction=direction,
                passed=passed,
                explanation=explanation,
                measure=measure,
            )
        )

    fid, priv = sections.fidelity, sections.privacy
    check(
        "fidelity.column_shapes",
        fid.column_shapes,
        policy.min_column_shapes,
        "min",
        "Each column's distribution in the synthetic data resembles the real one.",
        "no column could be compared",
    )
    scored = [c for c in fid.columns if c.score is not None]
    worst = min(scored, key=lambda c: c.score or 0.0) if scored else None
    check(
        "fidelity.worst_column_shape",
        worst.score if worst is not None else None,
        policy.min_worst_column_shape,
        "min",
        "No single column's distribution is lost, even where the others are close.",
        "no column could be compared",
        f"lowest column score, column {worst.column!r}" if worst is not None else None,
    )
    check(
        "fidelity.pair_trends",
        fid.pair_trends,
        policy.min_pair_trends,
        "min",
        "Relationships between pairs of columns are preserved.",
        "fewer than two comparable columns",
    )
    check(
        "fidelity.boundary_adherence",
        fid.boundary_adherence,
        policy.min_boundary_adherence,
        "min",
        "Synthetic numbers and dates stay within the range observed in the real data.",
        "no numerical or datetime column could be compared",
        "mean over numerical and datetime columns",
    )
    check(
        "detection.auc",
        sections.detection.auc,
        policy.max_detection_auc,
        "max",
        "A classifier cannot easily tell synthetic rows from real ones.",
        "the AUC was not measured",
    )
    check(
        "utility.primary_ratio",
        sections.utility.primary_ratio if sections.utility else None,
        policy.min_utility_ratio,
        "min",
        "A model trained on synthetic data predicts the target nearly as well as one trained "
        "on real data.",
        "utility was not measured" if sections.utility is None else "TRTR is not positive",
    )
    identity = priv.identity
    check(
        "privacy.exact_match_rate",
        identity.exact_match_rate
        if identity.exact_match_excess is None
        else identity.exact_match_excess,
        policy.max_exact_match_rate,
        "max",
        "Synthetic rows rarely copy a training row (beyond chance coincidences).",
        "",
        _measure(
            identity.holdout_exact_match_rate,
            "estimated share of copies beyond the holdout's chance matches",
        ),
    )
    check(
        "privacy.unique_match_rate",
        _excess(
            identity.unique_match_rate,
            identity.unique_match_rate,
            identity.holdout_unique_match_rate,
        ),
        policy.max_unique_match_rate,
        "max",
        "People who are unique on their quasi-identifiers are not reproduced exactly.",
        "no training row is unique on its quasi-identifiers",
        _measure(identity.holdout_unique_match_rate, EXCESS),
    )
    qim = priv.quasi_identifier_membership
    check(
        "privacy.qi_membership_advantage",
        qim.advantage if qim else None,
        policy.max_qi_membership_advantage,
        "max",
        "Finding a person's exact quasi-identifier values in the synthetic data does not tell "
        "whether they were in the training data.",
        "needs a holdout",
        EXCESS,
    )
    check(
        "privacy.share_closer_to_train",
        priv.distance.share_closer_to_train,
        policy.max_share_closer_to_train,
        "max",
        "Synthetic rows are not systematically closer to training rows than to unseen rows "
        "(a sign of memorisation).",
        "needs a holdout",
    )
    check(
        "privacy.membership_auc",
        priv.membership.auc if priv.membership else None,
        policy.max_membership_auc,
        "max",
        "An attacker cannot tell who was in the training data from the synthetic data.",
        "needs a holdout",
    )
    attributes = {
        a.sensitive: _excess(a.meaningful_rate, a.meaningful_rate, a.holdout_meaningful_rate)
        for a in priv.attribute
    }
    worst = max(attributes, key=lambda name: attributes[name] or 0.0, default=None)
    baseline = priv.attribute[0].holdout_meaningful_rate if priv.attribute else None
    check(
        "privacy.attribute_disclosure",
        None if worst is None else attributes[worst],
        policy.max_attribute_disclosure,
        "max",
        "Matching a person's quasi-identifiers does not reveal their sensitive values better "
        "than population statistics do.",
        "needs columns with role quasi_identifier and sensitive in the schema",
        f"{_measure(baseline, EXCESS) or 'training rate'}, worst sensitive column {worst!r}",
    )
    so = priv.singling_out
    check(
        "privacy.singling_out",
        _excess(so.success_rate, so.success_rate, so.holdout_success_rate) if so else None,
        policy.max_singling_out,
        "max",
        "Descriptions read off synthetic rows rarely point at exactly one real person.",
        "no modelled columns",
        _measure(so.holdout_success_rate, EXCESS) if so else None,
    )
    check(
        "coverage.rare_in_proportion",
        sections.coverage.rare_in_proportion,
        policy.min_rare_in_proportion,
        "min",
        "Rare categories appear in the synthetic data at roughly their real frequency.",
        "no rare category in the real data",
    )
    check(
        "validity.invalid_row_rate",
        sections.validity.invalid_row_rate,
        policy.max_invalid_row_rate,
        "max",
        "Synthetic rows respect the schema's bounds and domains and the declared constraints.",
        "",
    )
    return checks, notes


def _measure(holdout: float | None, excess: str) -> str | None:
    """What a privacy check's value is: `excess` when a holdout baseline was subtracted."""
    return None if holdout is None else excess


def _excess(raw: float | None, reference: float | None, holdout: float | None) -> float | None:
    """`raw` alone without a holdout; the reference rate minus the holdout rate with one."""
    if holdout is None or reference is None:
        return raw
    return reference - holdout
