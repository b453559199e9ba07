"""How the broker splits a local job's rows over its suppliers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from broker.orchestrator import row_shares
from fedsynth.jobs import JobSpec
from tests.wire.broker_harness import job_spec

WEIGHTS = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=4),
    st.floats(min_value=1e-3, max_value=1e6, allow_nan=False),
    min_size=1,
    max_size=8,
)


@given(st.integers(min_value=0, max_value=10**7), WEIGHTS)
def test_shares_add_up_and_stay_within_one_row_of_the_exact_proportion(
    rows: int, weights: dict[str, float]
) -> None:
    shares = row_shares(rows, weights)
    total = sum(weights.values())
    assert sum(shares.values()) == rows
    for supplier, weight in weights.items():
        assert abs(shares[supplier] - rows * weight / total) < 1 + 1e-6


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=9))
def test_equal_weights_give_the_first_suppliers_the_spare_rows(rows: int, n: int) -> None:
    names = [f"s{i}" for i in range(n)]
    base, extra = divmod(rows, n)
    assert row_shares(rows, dict.fromkeys(names, 1.0)) == {
        s: base + (1 if i < extra else 0) for i, s in enumerate(names)
    }


def test_weights_outside_a_local_job_are_refused() -> None:
    document = job_spec("weighted").model_dump(mode="json", by_alias=True)
    document["suppliers"][0]["weight"] = 3
    assert JobSpec.model_validate(document | {"topology": "local"}).suppliers[0].weight == 3
    with pytest.raises(ValidationError, match="only splits the rows of a 'local' job"):
        JobSpec.model_validate(document)
