"""The Renyi orders privacy curves are tabulated on, and the least epsilon they can certify.

Kept apart from the accountant (which needs scipy) so that checking a job's privacy section
loads nothing heavy.
"""

from __future__ import annotations

import math

ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
"""Renyi orders every curve is tabulated on (opacus's DEFAULT_ALPHAS)."""


def least_epsilon(delta: float) -> float:
    """The least epsilon any release is certified at, at `delta`, on ORDERS: what releasing
    nothing converts to (the conversion of `accountant.epsilon_from_rdp` at a zero curve). A
    smaller budget buys no noise level at all."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    return min(-(math.log(delta) + math.log(a)) / (a - 1) + math.log((a - 1) / a) for a in ORDERS)


def check_epsilon_reachable(epsilon: float, delta: float) -> None:
    """ValueError naming the floor when `epsilon` at `delta` is at or below `least_epsilon`."""
    floor = least_epsilon(delta)
    if epsilon <= floor:
        raise ValueError(
            f"epsilon {epsilon:g} at delta {delta:g} is below {floor:.3f}, the least this "
            f"accountant certifies (Renyi orders up to {ORDERS[-1]:g}): raise epsilon or delta"
        )
