"""Fixture: one real broker process per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.wire.broker_harness import BrokerProcess, make_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = make_broker(tmp_path_factory.mktemp("broker"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
