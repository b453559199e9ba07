"""Fixtures: one real broker process per test module, and its state opened in the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker.config import BrokerConfig
from broker.state import BrokerState
from tests.wire.broker_harness import BrokerProcess, running_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(tmp_path_factory.mktemp("broker")) as proc:
        yield proc


@pytest.fixture(scope="module")
def state(broker: BrokerProcess) -> Iterator[BrokerState]:
    """The module's broker state, opened here as a second process would (SQLite WAL)."""
    opened = BrokerState.open(BrokerConfig.load(broker.config_path))
    yield opened
    opened.close()
