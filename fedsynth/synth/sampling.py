"""Drawing exactly n rows that satisfy every constraint and condition, or failing clearly.

Batches are drawn from the model, repaired by each rule's transform, and filtered by each rule's
check; batch sizes adapt to the acceptance rate. When the draw budget runs out, the error names
the rule that rejected the most rows and how to keep the rows found; a caller that asked for
`allow_fewer` gets those rows and a `SamplingShortfall` warning saying what fell short instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

DRAWS_PER_ROW = 1000
MIN_DRAWS = 100_000
MAX_BATCH = 500_000


class Rule(Protocol):
    """A constraint or condition: repairs what it can, then says which rows hold."""

    @property
    def label(self) -> str: ...

    def transform(self, df: pd.DataFrame) -> pd.DataFrame: ...


class SamplingError(ValueError):
    """Not enough rows met the constraints and conditions within the draw budget."""


class SamplingShortfall(UserWarning):
    """Fewer rows than asked met the rules; the caller allowed fewer, so they are returned."""


@dataclass
class _Tally:
    drawn: int = 0
    accepted: int = 0


def draw_rows(
    n: int,
    draw: Callable[[int], pd.DataFrame],
    rules: Sequence[tuple[Rule, Callable[[pd.DataFrame], np.ndarray]]],
    *,
    progress: Callable[[int, int], None] | None = None,
    allow_fewer: bool = False,
) -> pd.DataFrame:
    """`n` rows from `draw` on which every (rule, check) pair holds.

    With `allow_fewer`, an exhausted draw budget returns the rows found so far, with a warning.
    """
    if n < 0:
        raise SamplingError(f"cannot sample {n} rows; ask for zero or more")
    budget = max(DRAWS_PER_ROW * n, MIN_DRAWS)
    tally = _Tally()
    passed = np.zeros(len(rules), dtype=np.int64)
    kept: list[pd.DataFrame] = []
    while tally.accepted < n:
        if tally.drawn >= budget:
            shortfall = _shortfall(n, tally, rules, passed)
            if not allow_fewer:
                raise SamplingError(
                    f"{shortfall}. To keep the {tally.accepted} rows found instead, pass "
                    "--allow-fewer (CLI) or allow_fewer=True (API)"
                )
            warnings.warn(shortfall, SamplingShortfall, stacklevel=3)
            break
        remaining = n - tally.accepted
        rate = (tally.accepted + 1) / (tally.drawn + 1) if tally.drawn else 1.0
        size = int(
            min(max(remaining / rate * 1.2 + 16, remaining), MAX_BATCH, budget - tally.drawn)
        )
        batch = draw(size)
        ok = np.ones(len(batch), dtype=bool)
        for rule, _ in rules:
            batch = rule.transform(batch)
        for i, (_, check) in enumerate(rules):
            holds = check(batch)
            passed[i] += int(holds.sum())
            ok &= holds
        tally.drawn += len(batch)
        accepted = batch.loc[ok].head(remaining)
        tally.accepted += len(accepted)
        kept.append(accepted)
        if progress is not None:
            progress(tally.accepted, n)
    out = pd.concat(kept, ignore_index=True) if kept else draw(0)
    return out.reset_index(drop=True)


def _shortfall(
    n: int,
    tally: _Tally,
    rules: Sequence[tuple[Rule, Callable[[pd.DataFrame], np.ndarray]]],
    passed: np.ndarray,
) -> str:
    """What fell short when the draw budget ran out: the rows found and the strictest rule."""
    worst = int(np.argmin(passed))
    rate = passed[worst] / max(tally.drawn, 1)
    return (
        f"only {tally.accepted} of {n} rows met every constraint and condition after "
        f"{tally.drawn} draws; {rules[worst][0].label} held on {rate:.4%} of drawn rows. "
        "Loosen that constraint or condition, or check that the model can produce such rows"
    )
