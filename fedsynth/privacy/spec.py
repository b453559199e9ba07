"""Privacy settings written by people: a job's privacy section and a supplier agent's cap.

`PrivacySpec` is the section the JobSpec embeds; `BudgetCap` is what an agent's config declares
per source. Both are pydantic because they come from YAML written by a person or from another
party, and both refuse negative, NaN or infinite budgets.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedsynth.privacy.orders import check_epsilon_reachable


class BudgetCap(BaseModel):
    """The most a supplier lets be spent on one source, over all jobs: (epsilon, delta)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(gt=0, allow_inf_nan=False, description="Total epsilon allowed.")
    delta: float = Field(1e-6, gt=0, lt=1, allow_inf_nan=False, description="Total delta.")


class PrivacySpec(BaseModel):
    """A job's privacy section: the (epsilon, delta) one release may spend and how to spend it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(gt=0, allow_inf_nan=False, description="Epsilon for this release.")
    delta: float = Field(1e-6, gt=0, lt=1, allow_inf_nan=False, description="Delta for it.")
    secure_aggregation: bool = Field(
        True, description="Sum suppliers' noisy statistics under pairwise masks (federated jobs)."
    )
    clip: float = Field(
        3.0, gt=0, allow_inf_nan=False, description="Bound on normal scores for the DP copula."
    )

    @model_validator(mode="after")
    def _reachable(self) -> PrivacySpec:
        check_epsilon_reachable(self.epsilon, self.delta)
        return self
