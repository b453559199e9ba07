"""Fixture: one federation (broker and four agents) shared by the federation tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.federation.harness import Federation, make_federation


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = make_federation(tmp_path_factory.mktemp("federation"))
    fed.broker.start()
    for agent in fed.agents.values():
        agent.start()
    try:
        yield fed
    finally:
        fed.stop()
