"""The audit report: every measured value, the checks the policy made and the verdict.

It is the document the broker reads (`verdict`) and signs into a release attestation, so it is a
validated pydantic model that round-trips through JSON without loss.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedsynth.audit.policy import AuditPolicy
from fedsynth.documents import describe_problems

REPORT_FORMAT_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckResult(_Model):
    """One policy check: the measured value against its threshold."""

    name: str = Field(description="Dotted name, e.g. 'privacy.membership_auc'.")
    value: float
    threshold: float
    direction: Literal["min", "max"] = Field(
        description="'min': the value must be at least the threshold; 'max': at most."
    )
    passed: bool
    explanation: str = Field(description="What the check protects, in plain language.")
    measure: str | None = Field(
        None,
        description="What the value is when it is not the plain measurement, e.g. the training "
        "rate minus the holdout rate.",
    )


class Distribution(_Model):
    """Shares of one column in real and synthetic data, for overlay plots."""

    labels: list[str] = Field(description="Category labels, or bin edges as text for numbers.")
    edges: list[float] | None = Field(
        None, description="Bin edges for continuous columns: the real minimum to the real maximum."
    )
    real: list[float]
    synthetic: list[float]
    synthetic_below: float | None = Field(
        None, description="Share of synthetic values below the real minimum (continuous columns)."
    )
    synthetic_above: float | None = Field(
        None, description="Share of synthetic values above the real maximum (continuous columns)."
    )


class ColumnShape(_Model):
    """Similarity of one column's marginal distribution (SDMetrics KS / TV complement)."""

    column: str
    kind: str
    metric: Literal["KSComplement", "TVComplement"]
    score: float | None
    distribution: Distribution
    boundary_adherence: float | None = Field(
        None,
        description="SDMetrics BoundaryAdherence (numerical and datetime columns): share of "
        "synthetic values within the real column's observed [min, max].",
    )
    real_range: tuple[str, str] | None = Field(
        None, description="Least and greatest real value, as text (numerical and datetime)."
    )
    synthetic_range: tuple[str, str] | None = Field(
        None, description="Least and greatest synthetic value, as text (numerical and datetime)."
    )


class PairTrend(_Model):
    """Similarity of one column pair's joint behaviour."""

    columns: tuple[str, str]
    metric: Literal["CorrelationSimilarity", "ContingencySimilarity"]
    score: float | None
    real_correlation: float | None = None
    synthetic_correlation: float | None = None


class CorrelationMatrices(_Model):
    """Pearson correlations of the continuous columns, real and synthetic (None if undefined)."""

    columns: list[str]
    real: list[list[float | None]]
    synthetic: list[list[float | None]]


class FidelityReport(_Model):
    """Univariate and bivariate similarity, with SDMetrics' Quality Report aggregation."""

    column_shapes: float | None
    pair_trends: float | None
    overall: float | None
    columns: list[ColumnShape]
    pairs: list[PairTrend]
    correlations: CorrelationMatrices
    boundary_adherence: float | None = Field(
        None,
        description="Mean BoundaryAdherence over numerical and datetime columns (not part of "
        "`overall`, which is the Quality Report's score).",
    )


class DetectionReport(_Model):
    """How well a classifier tells real rows from synthetic ones (out-of-fold predictions)."""

    classifier: str
    folds: int
    rows_real: int
    rows_synthetic: int
    auc: float | None = Field(None, description="None when not measured (see the notes).")
    pmse: float | None = Field(
        None, description="Mean of (logistic propensity - synthetic share) squared, in sample."
    )
    pmse_ratio: float | None = Field(
        None, description="pMSE over its maximum c(1-c): 0 = indistinguishable."
    )


class UtilityReport(_Model):
    """Train on synthetic / test on real holdout (TSTR) against train on real (TRTR)."""

    target: str
    task: Literal["classification", "regression"]
    model: str
    rows_train: int
    rows_test: int
    tstr: dict[str, float | None]
    trtr: dict[str, float | None]
    ratio: dict[str, float | None] = Field(
        description="TSTR relative to TRTR per metric; 1 = as useful (MAE inverted)."
    )
    primary_metric: str
    primary_ratio: float | None


class IdentityDisclosure(_Model):
    """Synthetic rows that reproduce real rows exactly."""

    columns: list[str]
    quasi_identifiers: list[str]
    exact_match_rate: float = Field(description="Share of synthetic rows equal to a training row.")
    reference_exact_match_rate: float | None = Field(
        None, description="Same share against an equal-size training sample (holdout baseline)."
    )
    holdout_exact_match_rate: float | None = None
    exact_match_excess: float | None = Field(
        None, description="Estimated share of synthetic rows copying training rows beyond chance."
    )
    qi_unique_records: int
    unique_match_rate: float | None = Field(
        description="Share of training rows unique on their quasi-identifiers copied exactly."
    )
    holdout_unique_match_rate: float | None = None


class Histogram(_Model):
    """Counts over shared bin edges for the training and holdout distances."""

    edges: list[float]
    train: list[int]
    holdout: list[int] | None = None


class DistanceToClosestRecord(_Model):
    """Distance from synthetic rows to their closest training and holdout rows."""

    synthetic_rows: int
    reference_rows: int
    train_quantiles: dict[str, float]
    holdout_quantiles: dict[str, float] | None = None
    share_closer_to_train: float | None = Field(
        None, description="Share of synthetic rows nearer to train than holdout; 0.5 = no leak."
    )
    histogram: Histogram


class MembershipInference(_Model):
    """A distance attack: training members should not be closer to the synthetic data."""

    members: int
    non_members: int
    auc: float


class QuasiIdentifierMembership(_Model):
    """Membership through exact quasi-identifier values: does a person's exact combination of
    quasi-identifiers occur in the synthetic data more often for members than for non-members?"""

    quasi_identifiers: list[str]
    members: int = Field(description="Training rows checked.")
    non_members: int | None = Field(None, description="Holdout rows checked.")
    member_match_rate: float = Field(
        description="Share of training rows whose exact quasi-identifier values occur together "
        "in a synthetic row."
    )
    non_member_match_rate: float | None = Field(
        None, description="Same share for holdout rows, never seen by the synthesizer."
    )
    advantage: float | None = Field(
        None,
        description="Member rate minus non-member rate: the attacker's advantage (true minus "
        "false positive rate); the attack's AUC is 0.5 + advantage / 2.",
    )


class AttributeDisclosure(_Model):
    """Inferring one sensitive column from quasi-identifiers matched in the synthetic data."""

    sensitive: str
    quasi_identifiers: list[str]
    records: int
    match_rate: float
    correct_rate: float
    baseline_accuracy: float = Field(description="Accuracy of guessing the real marginal's mode.")
    meaningful_rate: float = Field(
        description="Share of records with a correct guess more confident than the marginal."
    )
    holdout_meaningful_rate: float | None = None


class SinglingOut(_Model):
    """Predicates built from synthetic rows that isolate exactly one real record."""

    predicates: int
    columns: list[str]
    reference_rows: int
    success_rate: float
    holdout_success_rate: float | None = None


class PrivacyReport(_Model):
    """Disclosure risk measured against the training rows (and a holdout baseline if given)."""

    identity: IdentityDisclosure
    distance: DistanceToClosestRecord
    membership: MembershipInference | None
    attribute: list[AttributeDisclosure]
    singling_out: SinglingOut | None
    quasi_identifier_membership: QuasiIdentifierMembership | None = Field(
        None, description="None in reports written before it was measured."
    )


class RareCategory(_Model):
    """A category below the rarity threshold in the real data."""

    column: str
    value: str
    real_share: float
    synthetic_share: float


class CoverageReport(_Model):
    """Whether categories, rare ones especially, appear in the synthetic data in proportion."""

    rare_threshold: float
    category_coverage: float | None
    rare_categories: list[RareCategory]
    rare_present: float | None
    rare_in_proportion: float | None


class ValidityCheck(_Model):
    """How many synthetic rows break one schema rule or declared constraint."""

    name: str
    violations: int


class ValidityReport(_Model):
    """Schema bounds, domains, nullability and declared constraints on every synthetic row."""

    rows: int
    invalid_rows: int
    invalid_row_rate: float
    checks: list[ValidityCheck]


class RowCounts(_Model):
    """Rows of each input table."""

    real: int
    synthetic: int
    holdout: int | None


class AuditReport(_Model):
    """Everything one audit measured, the policy it was judged by and its verdict."""

    format_version: Literal[1] = REPORT_FORMAT_VERSION
    verdict: Literal["pass", "fail"]
    failed_checks: list[CheckResult]
    checks: list[CheckResult]
    schema_name: str
    created_at: datetime
    rows: RowCounts
    target: str | None
    policy: AuditPolicy
    fidelity: FidelityReport
    detection: DetectionReport
    utility: UtilityReport | None
    privacy: PrivacyReport
    coverage: CoverageReport
    validity: ValidityReport
    notes: list[str] = Field(default_factory=list, description="What was not assessed and why.")

    def headline_scores(self) -> dict[str, float | None]:
        """The few aggregate numbers a verdict or a release summary carries beyond the party
        that audited: no row, no distribution."""
        return {
            "fidelity": self.fidelity.overall,
            "column_shapes": self.fidelity.column_shapes,
            "pair_trends": self.fidelity.pair_trends,
            "boundary_adherence": self.fidelity.boundary_adherence,
            "detection_auc": self.detection.auc,
            "utility_ratio": self.utility.primary_ratio if self.utility else None,
        }

    def to_json(self) -> str:
        """Indented JSON text of the report."""
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "<report>") -> AuditReport:
        """Parse and validate a report; ReportError names the source and every problem."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise ReportError(describe_problems(source, exc, "audit report")) from exc


class ReportError(ValueError):
    """An audit report document that failed validation."""
