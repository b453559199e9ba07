"""The audit policy: thresholds that turn measurements into a verdict, and the sample sizes used.

Written by people as YAML (every field optional, unknown fields rejected). Privacy checks compare
against a holdout baseline when one is given: the value checked is then the rate on training rows
minus the same rate on an equal-size holdout, so risks the data carries by nature (many identical
people, attributes predictable for anyone) do not count against the synthesizer.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedsynth.documents import describe_problems


class AuditPolicy(BaseModel):
    """Thresholds (documented defaults) and the bounded sample sizes that keep an audit fast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_column_shapes: float = Field(
        0.85, ge=0, le=1, description="Least mean KS/TV complement over columns."
    )
    min_worst_column_shape: float = Field(
        0.60,
        ge=0,
        le=1,
        description="Least KS/TV complement of any one column: a mean over many good columns "
        "can hide one the synthesizer lost (a DP model spreading a lab value over its whole "
        "public range).",
    )
    min_pair_trends: float = Field(
        0.80, ge=0, le=1, description="Least mean correlation/contingency similarity over pairs."
    )
    min_boundary_adherence: float = Field(
        0.90,
        ge=0,
        le=1,
        description="Least mean BoundaryAdherence over numerical and datetime columns: the share "
        "of synthetic values within the real column's observed [min, max]. A fresh sample of "
        "the real process falls outside about 2 / (real rows + 1) of the time per column, and a "
        "federated candidate audited at one site also spans the other sites' ranges, which can "
        "bring a good release to about 0.95.",
    )
    max_detection_auc: float = Field(
        0.80, ge=0.5, le=1, description="Most AUC of a real-vs-synthetic classifier (0.5 = blind)."
    )
    min_utility_ratio: float = Field(
        0.80, ge=0, description="Least TSTR/TRTR ratio of the primary metric (macro-F1 or R²)."
    )
    max_exact_match_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Most share of synthetic rows copying a training row."
        " With a holdout: the estimated share of copies beyond chance coincidences.",
    )
    max_unique_match_rate: float = Field(
        0.01, ge=0, le=1, description="Most share of quasi-identifier-unique rows copied exactly."
    )
    max_share_closer_to_train: float = Field(
        0.60, ge=0, le=1, description="Most share of synthetic rows nearer train than holdout."
    )
    max_membership_auc: float = Field(
        0.60, ge=0, le=1, description="Most AUC of the distance membership-inference attack."
    )
    max_qi_membership_advantage: float = Field(
        0.10,
        ge=0,
        le=1,
        description="Most excess of the share of training rows whose exact quasi-identifier "
        "combination occurs in the synthetic data over the same share of holdout rows (needs a "
        "holdout). 0.1 lets the attack reach an AUC of 0.55.",
    )
    max_attribute_disclosure: float = Field(
        0.05, ge=0, le=1, description="Most share of records meaningfully disclosed."
    )
    max_singling_out: float = Field(
        0.05, ge=0, le=1, description="Most share of synthetic predicates singling out one record."
    )
    min_rare_in_proportion: float = Field(
        0.50, ge=0, le=1, description="Least share of rare categories within a factor 2."
    )
    max_invalid_row_rate: float = Field(
        0.0, ge=0, le=1, description="Most share of synthetic rows breaking the schema/constraints."
    )
    rare_share: float = Field(
        0.01, gt=0, lt=1, description="A category rarer than this share of real rows is 'rare'."
    )
    quasi_identifier_bins: int = Field(
        10, ge=2, le=1000, description="Quantile bins for continuous quasi-identifiers."
    )
    detection_rows: int = Field(
        20_000, ge=100, description="Most rows per side for the distinguishability classifier."
    )
    utility_rows: int = Field(20_000, ge=100, description="Most training rows per utility model.")
    distance_rows: int = Field(
        10_000, ge=100, description="Most query rows for distance (DCR, membership) measures."
    )
    reference_rows: int = Field(
        50_000, ge=100, description="Most training / holdout rows searched for nearest records."
    )
    singling_out_predicates: int = Field(
        500, ge=10, description="Predicates drawn from synthetic rows for singling out."
    )
    seed: int = Field(0, ge=0, description="Seed for every sample and model in the audit.")

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<policy>") -> AuditPolicy:
        """Parse a policy document; PolicyError names the source, each bad field and the fix."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise PolicyError(f"{source}: a policy is a mapping of threshold names to numbers")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            known = ", ".join(cls.model_fields)
            raise PolicyError(
                describe_problems(source, exc, "audit policy", cls, data)
                + f"\nKnown fields: {known}"
            ) from exc

    @classmethod
    def load(cls, path: str | Path) -> AuditPolicy:
        """Read a policy from a YAML (or JSON) file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise PolicyError(f"{path}: audit policy file not found") from exc
        except UnicodeDecodeError as exc:
            raise PolicyError(
                f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                f"{exc.start}). Fix: save the audit policy as UTF-8 YAML"
            ) from exc
        return cls.from_yaml(text, source=str(path))


class PolicyError(ValueError):
    """An audit policy document that cannot be used."""
