"""The agent's pure rules: reconnect backoff with full jitter, and a site's audit bar that a job's
policy can never loosen."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedsynth.audit.policy import AuditPolicy, PolicyError
from supplier_agent.agent import backoff_delay
from supplier_agent.audit_bar import site_policy
from supplier_agent.config import Reconnect

unit = st.floats(0, 1, allow_nan=False)


@given(st.integers(0, 40), st.integers(0, 2**32))
def test_backoff_stays_within_the_exponential_cap(attempt: int, seed: int) -> None:
    reconnect = Reconnect(initial_s=0.5, max_s=30.0)
    delay = backoff_delay(attempt, reconnect, random.Random(seed))
    assert 0.0 <= delay <= min(30.0, 0.5 * 2.0**attempt)


def test_backoff_is_jittered_rather_than_fixed() -> None:
    rng = random.Random(7)
    delays = {backoff_delay(5, Reconnect(), rng) for _ in range(20)}
    assert len(delays) == 20


@given(job_min=unit, site_min=unit, job_max=unit, site_max=unit)
def test_site_bar_is_never_looser_than_the_job_or_the_site(
    job_min: float, site_min: float, job_max: float, site_max: float
) -> None:
    job = AuditPolicy(min_column_shapes=job_min, max_exact_match_rate=job_max)
    merged = site_policy(job, {"min_column_shapes": site_min, "max_exact_match_rate": site_max})
    assert merged.min_column_shapes == max(job_min, site_min)
    assert merged.max_exact_match_rate == min(job_max, site_max)


def test_unknown_site_threshold_is_refused_with_the_known_names() -> None:
    with pytest.raises(PolicyError, match=r"min_colum_shapes.*min_column_shapes"):
        site_policy(AuditPolicy(), {"min_colum_shapes": 0.9})


def test_a_lenient_job_cannot_loosen_the_sites_bar_below_the_defaults() -> None:
    lenient = AuditPolicy(max_exact_match_rate=1.0, min_column_shapes=0.0, max_membership_auc=1.0)
    merged = site_policy(lenient, {})
    defaults = AuditPolicy()
    assert merged.max_exact_match_rate == defaults.max_exact_match_rate
    assert merged.min_column_shapes == defaults.min_column_shapes
    assert merged.max_membership_auc == defaults.max_membership_auc


def test_a_site_may_loosen_its_own_bar_explicitly() -> None:
    lenient = AuditPolicy(max_exact_match_rate=1.0)
    assert site_policy(lenient, {"max_exact_match_rate": 0.5}).max_exact_match_rate == 0.5


def test_a_job_cannot_shrink_the_samples_the_sites_privacy_checks_use() -> None:
    small = AuditPolicy(distance_rows=100, reference_rows=100, singling_out_predicates=10)
    merged = site_policy(small, {})
    defaults = AuditPolicy()
    assert merged.distance_rows == defaults.distance_rows
    assert merged.reference_rows == defaults.reference_rows
    assert merged.singling_out_predicates == defaults.singling_out_predicates
    assert site_policy(small, {"distance_rows": 100}).distance_rows == 100
