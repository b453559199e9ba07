"""A job's privacy section: DP synthesizers take their budget from it and only from it, federated
DP jobs run in measurement rounds, and the rounds' costs add up to the model's whole cost."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fedsynth.jobs import JobSpec, JobSpecError
from fedsynth.plans import Party, TaskKind, plan_of
from fedsynth.privacy.accountant import compose
from fedsynth.privacy.rounds import start_model, vector_bytes, vector_from_bytes

SCHEMA = {
    "name": "patients",
    "columns": [
        {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
        {"name": "bmi", "kind": "numerical", "dtype": "float", "min": 10, "max": 60},
        {"name": "sex", "kind": "categorical", "domain": ["F", "M"]},
    ],
}


def spec_data(synthesizer: str, topology: str = "federated", **extra: Any) -> dict[str, Any]:
    return {
        "name": "j",
        "topology": topology,
        "suppliers": [{"supplier": "a", "source": "s"}, {"supplier": "b", "source": "s"}],
        "schema": SCHEMA,
        "synthesizer": {"name": synthesizer},
        "rows": 10,
        **extra,
    }


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(JobSpecError) as err:
        JobSpec.from_json(json.dumps(data), source="job.yaml")
    return str(err.value)


def test_a_dp_synthesizer_without_a_privacy_section_is_refused() -> None:
    text = refused(spec_data("dp-marginal"))
    assert "privacy: synthesizer 'dp-marginal' is differentially private" in text


def test_a_non_dp_synthesizer_with_a_privacy_section_is_refused() -> None:
    text = refused(spec_data("copula", privacy={"epsilon": 1.0}))
    assert "'copula' is not differentially private" in text


def test_epsilon_in_synthesizer_params_and_every_other_problem_are_listed_at_once() -> None:
    data = spec_data("dp-copula", "local", privacy={"epsilon": 1.0}, quorum=5)
    data["synthesizer"]["params"] = {"epsilon": 2.0, "delta": 1e-5, "clip": 2.0}
    text = refused(data)
    assert "4 problem(s)" in text
    for place in ("quorum", "params.epsilon", "params.delta", "params.clip"):
        assert f"synthesizer.{place}:" in text or f"  - {place}:" in text
    assert "privacy.epsilon" in text


def test_federated_jobs_take_the_dp_models_and_refuse_tvae_without_dp_clearly() -> None:
    for name in ("dp-marginal", "dp-copula", "tvae"):
        JobSpec.model_validate(spec_data(name, privacy={"epsilon": 1.0}))
    text = refused(spec_data("tvae"))
    assert "'tvae' is not mergeable" in text and "DP-SGD only: add a privacy section" in text


def test_a_federated_dp_tvae_job_plans_one_round_per_fedavg_round() -> None:
    data = spec_data("tvae", privacy={"epsilon": 2.0, "secure_aggregation": False})
    data["synthesizer"]["params"] = {"fedavg_rounds": 4, "hidden": 8, "latent": 2}
    plan = plan_of(JobSpec.model_validate(data))
    assert [s.name for s in plan if s.party is Party.SUPPLIERS] == [
        *(f"measure_{n}" for n in range(1, 5)),
        "audit_candidate",
    ]


def test_the_model_gets_epsilon_delta_and_clip_from_the_privacy_section() -> None:
    spec = JobSpec.model_validate(
        spec_data("dp-copula", privacy={"epsilon": 2.0, "delta": 1e-7, "clip": 2.5})
    )
    assert spec.model_params() == {"epsilon": 2.0, "delta": 1e-7, "clip": 2.5}
    plain = JobSpec.model_validate(spec_data("copula"))
    assert plain.model_params() == {} and plain.privacy is None


@pytest.mark.parametrize("secure", [True, False])
@pytest.mark.parametrize(("name", "rounds"), [("dp-marginal", 3), ("dp-copula", 2)])
def test_a_federated_dp_job_runs_the_models_rounds_with_key_announcements_only_when_secure(
    secure: bool, name: str, rounds: int
) -> None:
    spec = JobSpec.model_validate(
        spec_data(name, privacy={"epsilon": 1.0, "secure_aggregation": secure})
    )
    plan = plan_of(spec)
    kinds = [s.action for s in plan if s.party is Party.SUPPLIERS]
    announce = [TaskKind.SECAGG_ANNOUNCE.value] if secure else []
    round_ = [*announce, TaskKind.DP_MEASURE.value]
    assert kinds == [*round_ * rounds, TaskKind.AUDIT_CANDIDATE.value]
    assert plan[-1].action == "release_audited"
    assert {s.round for s in plan} == set(range(rounds + 1))
    last = next(s for s in plan if s.name == f"measure_{rounds}")
    assert {f"round_{k}_sum" for k in range(1, rounds)} <= set(last.inputs)


@pytest.mark.parametrize("name", ["dp-marginal", "dp-copula"])
def test_the_rounds_cost_exactly_the_models_whole_cost(name: str) -> None:
    spec = JobSpec.model_validate(spec_data(name, privacy={"epsilon": 1.5, "delta": 1e-6}))
    model = start_model(spec)
    costs = model.round_costs()
    assert len(costs) >= 2 and all(c.rdp is not None for c in costs)
    np.testing.assert_allclose(
        np.asarray(compose(costs).rdp), np.asarray(model.privacy_cost_.rdp), rtol=1e-12
    )
    assert all(0 < c.rdp[0] < model.privacy_cost_.rdp[0] for c in costs)
    assert compose(costs).epsilon_at(1e-6) == pytest.approx(1.5, rel=1e-6)


def test_round_vectors_travel_as_raw_little_endian_values_and_bad_lengths_are_refused() -> None:
    masked = np.array([0, 1, 2**64 - 1], dtype=np.uint64)
    assert vector_bytes(masked, masked=True) == masked.astype("<u8").tobytes()
    np.testing.assert_array_equal(
        vector_from_bytes(vector_bytes(masked, masked=True), masked=True), masked
    )
    sums = np.array([1.5, -2.0])
    np.testing.assert_array_equal(
        vector_from_bytes(vector_bytes(sums, masked=False), masked=False), sums
    )
    with pytest.raises(ValueError, match="8-byte"):
        vector_from_bytes(b"\x00" * 9, masked=True)
    with pytest.raises(ValueError, match="finite"):
        vector_from_bytes(vector_bytes(np.array([np.nan]), masked=False), masked=False)
