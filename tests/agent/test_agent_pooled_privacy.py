"""A DP job fitted at the broker (`prepared`, `central`) spends the site's budget on its rows:
a site without a cap, or with too small a one, sends nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from supplier_agent.outgoing import Outgoing, TaskRefused
from supplier_agent.tasks import TaskContext, upload_prepared, upload_raw
from tests.agent.test_agent_privacy import CONFIG, context, load


@pytest.mark.parametrize(
    ("topology", "handler"), [("central", upload_raw), ("prepared", upload_prepared)]
)
def test_rows_for_a_dp_fit_at_the_broker_need_a_cap_that_covers_the_job(
    tmp_path: Path, topology: str, handler: Callable[[TaskContext], Outgoing]
) -> None:
    bare = load(tmp_path, CONFIG.replace("privacy_cap: {epsilon: 4.0, delta: 1.0e-5}\n", ""))
    with pytest.raises(TaskRefused, match=r"no privacy_cap for source 'registry'"):
        handler(context(bare, tmp_path, topology, "registry"))
    with pytest.raises(TaskRefused, match=r"over the cap \(0.5"):
        handler(context(load(tmp_path), tmp_path, topology, "admissions"))
    assert not list(tmp_path.glob("*.parquet"))
