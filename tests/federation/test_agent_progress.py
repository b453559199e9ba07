"""The agent drives a progress bar through every transfer it makes for a job."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from fedsynth.progress import Update
from supplier_agent.agent import SupplierAgent
from supplier_agent.config import AgentConfig
from tests.federation.harness import Federation, job


@dataclass
class RecordedBars:
    """A ProgressFactory that keeps every bar it opened and every update it got."""

    bars: list[tuple[str, str, list[tuple[int, int | None]]]] = field(default_factory=list)

    @contextlib.contextmanager
    def __call__(self, description: str, *, unit: str = "steps") -> Iterator[Update]:
        updates: list[tuple[int, int | None]] = []
        self.bars.append((description, unit, updates))
        yield lambda done, total: updates.append((done, total))


def test_agent_shows_progress_for_each_transfer_and_fit_and_keeps_its_html_reports(
    federation: Federation,
) -> None:
    process = federation.agents["north"]
    process.stop()
    bars = RecordedBars()
    config = AgentConfig.load(process.config_path)
    agent = SupplierAgent(config, progress=bars)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        jobs = [federation.submit(job(f"progress-{t}", t)) for t in ("federated", "local")]
        finished = [federation.wait(j) for j in jobs]
    finally:
        agent.stop()
        runner.join(timeout=30)
        process.start()
    assert [f.state for f in finished] == ["succeeded"] * 2, [f.reason for f in finished]
    sends = [(d, u) for d, unit, u in bars.bars if d.startswith("sending") and unit == "bytes"]
    fetches = [(d, u) for d, unit, u in bars.bars if d.startswith("fetching") and unit == "bytes"]
    assert len(sends) >= 2 and len(fetches) >= 2
    for description, updates in sends:
        done, total = updates[-1]
        assert total is not None and done == total > 0, description
    for description, updates in fetches:
        assert updates and updates[-1][0] > 0, description
    fits = [u for d, unit, u in bars.bars if d.startswith("fitting") and unit == "steps"]
    assert len(fits) == 1 and fits[0]
    done, total = fits[0][-1]
    assert total is not None and done == total > 0
    reports = list((config.state_dir / "reports").glob("*/audit.json"))
    assert reports and all((r.parent / "audit.html").stat().st_size > 0 for r in reports)
