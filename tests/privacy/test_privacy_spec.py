"""The privacy section of a job and the agent's cap: validated documents from people."""

from __future__ import annotations

import math

import pytest
import yaml
from pydantic import ValidationError

from fedsynth.privacy.spec import BudgetCap, PrivacySpec


def test_a_privacy_section_reads_from_yaml_with_defaults() -> None:
    spec = PrivacySpec.model_validate(yaml.safe_load("epsilon: 1.5\n"))
    assert spec.epsilon == 1.5 and spec.delta == 1e-6 and spec.secure_aggregation


@pytest.mark.parametrize("bad", [-1.0, 0.0, math.nan, math.inf])
def test_budgets_that_are_not_positive_and_finite_are_refused(bad: float) -> None:
    with pytest.raises(ValidationError, match="epsilon"):
        PrivacySpec(epsilon=bad)
    with pytest.raises(ValidationError, match="epsilon"):
        BudgetCap(epsilon=bad)
    with pytest.raises(ValidationError, match="delta"):
        BudgetCap(epsilon=1.0, delta=bad)


def test_unknown_fields_are_refused_so_typos_do_not_pass_silently() -> None:
    with pytest.raises(ValidationError, match="epsilno"):
        PrivacySpec.model_validate({"epsilon": 1.0, "epsilno": 2.0})
