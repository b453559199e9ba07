"""Fixtures every test folder may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny networks train faster on one thread than on two contended cores."""
    import torch  # only the tests that train a network pay for loading it

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
