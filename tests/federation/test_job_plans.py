"""Job specs name a topology whose plan the broker runs; specs that cannot run are refused at
submission with every problem listed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fedsynth.jobs import JobSpec, JobSpecError, Topology
from fedsynth.plans import Party, TaskKind, plan_for
from tests.federation.harness import job


@pytest.mark.parametrize("topology", list(Topology))
def test_every_topology_has_a_plan_that_ends_in_a_broker_release(topology: Topology) -> None:
    plan = plan_for(topology)
    assert plan[0].party is Party.SUPPLIERS
    assert plan[-1].party is Party.BROKER and "release" in plan[-1].action
    assert {s.action for s in plan if s.party is Party.SUPPLIERS} <= {k.value for k in TaskKind}


def test_federated_plan_keeps_rows_at_the_sites() -> None:
    kinds = {s.action for s in plan_for(Topology.FEDERATED) if s.party is Party.SUPPLIERS}
    assert kinds == {"marginal_stats", "dependence_stats", "audit_candidate"}


def spec_data(topology: str) -> dict[str, Any]:
    return job("bad", topology).model_dump(mode="json", by_alias=True)


def test_a_federated_job_needs_a_mergeable_synthesizer() -> None:
    data = spec_data("federated")
    data["synthesizer"] = {"name": "cart"}
    with pytest.raises(JobSpecError, match="'cart' is not mergeable, use 'copula'"):
        JobSpec.from_json(json.dumps(data))


def test_prep_specs_must_name_suppliers_of_the_job() -> None:
    data = spec_data("central")
    data["prep"] = {"nobody": {"source": "patients"}}
    with pytest.raises(JobSpecError, match=r"suppliers not in the job: \['nobody'\]"):
        JobSpec.from_json(json.dumps(data))


def test_every_field_problem_of_a_spec_is_listed_at_once() -> None:
    data = spec_data("local")
    data["rows"] = 0
    data["holdout_share"] = 2
    with pytest.raises(JobSpecError) as refused:
        JobSpec.from_json(json.dumps(data), source="submitted job spec")
    text = str(refused.value)
    assert "2 problem(s)" in text and "rows" in text and "holdout_share" in text


def test_unknown_synthesizer_is_refused_in_the_spec() -> None:
    from fedsynth.jobs import JobSpec, JobSpecError

    with pytest.raises(JobSpecError, match=r"no synthesizer called 'gaussian_copula'.*copula"):
        JobSpec.from_json(
            '{"name": "j", "topology": "central", "suppliers": [{"supplier": "a", "source": "s"}],'
            ' "schema": {"name": "t", "columns": [{"name": "x", "kind": "text"}]},'
            ' "synthesizer": {"name": "gaussian_copula"}, "rows": 5}'
        )


def test_a_row_count_the_broker_cannot_hold_is_refused_at_submission() -> None:
    data = spec_data("federated")
    data["rows"] = 10**30
    with pytest.raises(JobSpecError, match=r"rows.*100000000"):
        JobSpec.from_json(json.dumps(data))


def test_a_job_spec_that_is_a_folder_or_not_utf8_is_refused_by_name(tmp_path) -> None:
    binary = tmp_path / "job.yaml"
    binary.write_bytes(b"\xff\xfe\x00bin")
    for path, reason in ((tmp_path, "cannot read"), (binary, "not UTF-8")):
        with pytest.raises(JobSpecError, match=reason):
            JobSpec.load(path)


def test_a_synthesizer_parameter_the_model_does_not_take_is_refused_at_submission() -> None:
    data = spec_data("local") | {"synthesizer": {"name": "cart", "params": {"bogus": 1}}}
    with pytest.raises(JobSpecError, match=r"bogus: the 'cart' synthesizer has no such"):
        JobSpec.from_json(json.dumps(data).encode(), source="job.yaml")


def test_a_synthesizer_parameter_of_the_wrong_type_is_refused_at_submission() -> None:
    data = spec_data("local") | {"synthesizer": {"name": "cart", "params": {"smoothing": 1}}}
    with pytest.raises(JobSpecError, match=r"smoothing=1: the 'cart' synthesizer takes bool"):
        JobSpec.from_json(json.dumps(data).encode(), source="job.yaml")


@pytest.mark.parametrize("name", ["x" * 201, "x\x1b[31mRED\n\nstate: released", "a\tb"])
def test_a_job_name_too_long_or_with_control_characters_is_refused(name: str) -> None:
    data = spec_data("local") | {"name": name}
    with pytest.raises(JobSpecError, match=r"name"):
        JobSpec.from_json(json.dumps(data))


def test_a_prep_expression_outside_the_safe_language_is_refused_at_submission() -> None:
    data = spec_data("local")
    source = data["suppliers"][0]["source"]
    supplier = data["suppliers"][0]["supplier"]
    derive = [{"name": "x", "expr": '__import__("os").system("id")'}]
    data["prep"] = {supplier: {"source": source, "derive": derive}}
    with pytest.raises(JobSpecError, match=r"derive.*expr"):
        JobSpec.from_json(json.dumps(data))


def test_a_prep_spec_for_another_source_than_the_job_takes_is_refused() -> None:
    data = spec_data("local")
    supplier = data["suppliers"][0]["supplier"]
    data["prep"] = {supplier: {"source": "other"}}
    with pytest.raises(JobSpecError, match=r"prep spec of .* is for source 'other'"):
        JobSpec.from_json(json.dumps(data))


def test_a_constraint_that_does_not_fit_the_schema_is_refused_at_submission() -> None:
    rule = {"kind": "derived", "column": "age", "expression": "age + 1"}
    data = spec_data("central") | {
        "synthesizer": {"name": "copula", "params": {"constraints": [rule]}}
    }
    with pytest.raises(JobSpecError, match=r"constraints.*'age' cannot be derived from itself"):
        JobSpec.from_json(json.dumps(data).encode(), source="job.yaml")
