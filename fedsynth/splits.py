"""The seeded train/holdout split shared by every party that audits against a holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd


def holdout_split(df: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): a seeded random `share` of the rows held out, at least one each side."""
    if len(df) < 2:
        raise ValueError(f"a holdout split needs at least 2 rows; the table has {len(df)}")
    order = np.random.default_rng(seed).permutation(len(df))
    cut = min(max(1, round(len(df) * share)), len(df) - 1)
    holdout = df.iloc[np.sort(order[:cut])].reset_index(drop=True)
    train = df.iloc[np.sort(order[cut:])].reset_index(drop=True)
    return train, holdout
