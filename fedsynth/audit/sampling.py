"""Bounded random samples of rows, so every audit measure has a predictable cost."""

from __future__ import annotations

import numpy as np
import pandas as pd


def sample_rows(df: pd.DataFrame, max_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """`df` itself if it has at most `max_rows` rows, else a uniform sample without replacement."""
    if len(df) <= max_rows:
        return df
    return df.iloc[np.sort(rng.choice(len(df), size=max_rows, replace=False))]


def equal_size_pair(
    train: pd.DataFrame, holdout: pd.DataFrame, max_rows: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Samples of `train` and `holdout` of one common size, so rates on them are comparable."""
    size = min(len(train), len(holdout), max_rows)
    return sample_rows(train, size, rng), sample_rows(holdout, size, rng)
