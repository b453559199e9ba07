"""Fixture: one real broker process per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.wire.broker_harness import BrokerProcess, running_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(tmp_path_factory.mktemp("broker")) as proc:
        yield proc
