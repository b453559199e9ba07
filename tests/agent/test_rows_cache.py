"""The agent prepares a job's rows once and hands every task its own copy."""

from __future__ import annotations

import pandas as pd
import pytest

from supplier_agent.rows_cache import PreparedRowsCache


def counting_loader(calls: list[str], name: str) -> pd.DataFrame:
    calls.append(name)
    return pd.DataFrame({"age": [30, 40, 50]})


def test_rows_are_loaded_once_per_job_and_source() -> None:
    cache, calls = PreparedRowsCache(), []
    for _ in range(3):
        cache.get("job-1", "patients", "{}", lambda: counting_loader(calls, "job-1"))
    cache.get("job-1", "visits", "{}", lambda: counting_loader(calls, "visits"))
    assert calls == ["job-1", "visits"]


def test_a_task_changing_its_rows_does_not_change_the_next_tasks() -> None:
    cache = PreparedRowsCache()
    first = cache.get("job-1", "patients", "{}", lambda: counting_loader([], "x"))
    first.loc[0, "age"] = 99
    first.drop(index=1, inplace=True)
    again = cache.get("job-1", "patients", "{}", lambda: counting_loader([], "x"))
    assert again["age"].tolist() == [30, 40, 50]


def test_only_the_most_recent_jobs_are_kept() -> None:
    cache, calls = PreparedRowsCache(jobs=2), []
    for job in ("job-1", "job-2", "job-3", "job-1"):
        cache.get(job, "patients", "{}", lambda job=job: counting_loader(calls, job))
    assert calls == ["job-1", "job-2", "job-3", "job-1"]


def test_another_prep_spec_is_prepared_afresh() -> None:
    cache, calls = PreparedRowsCache(), []
    cache.get("job-1", "patients", '{"a": 1}', lambda: counting_loader(calls, "a"))
    cache.get("job-1", "patients", '{"a": 2}', lambda: counting_loader(calls, "b"))
    assert calls == ["a", "b"]


def test_a_cache_for_no_job_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one job"):
        PreparedRowsCache(jobs=0)
