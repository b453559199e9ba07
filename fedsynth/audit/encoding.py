"""Numeric matrices of typed tables for the audit's models and nearest-neighbour searches, and
what the audit's boosting models can be fitted on."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fedsynth.audit.columns import as_codes, as_float, is_discrete, labels
from fedsynth.schema import Column

MAX_NATIVE_CATEGORIES = 250
VALIDATION_FRACTION = 0.1
ONE_HOT_WEIGHT = np.float32(np.sqrt(0.5))


def model_matrix(df: pd.DataFrame, columns: list[Column]) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix for histogram gradient boosting (NaN = missing) and its categorical mask."""
    features = []
    categorical = []
    for column in columns:
        if is_discrete(column):
            codes = as_codes(df[column.name], column).astype(np.float64)
            codes[codes < 0] = np.nan
            features.append(codes)
            categorical.append(len(labels(column)) <= MAX_NATIVE_CATEGORIES)
        else:
            features.append(as_float(df[column.name], column))
            categorical.append(False)
    return np.column_stack(features), np.asarray(categorical, dtype=bool)


def observed(x: np.ndarray) -> np.ndarray:
    """Which columns of a model matrix hold at least one value.

    A feature missing in every training row tells a model nothing, and histogram gradient
    boosting cannot bin one at all, so models are fitted without such features.
    """
    return ~np.isnan(x).all(axis=0)


def can_stop_early(y: np.ndarray, *, stratified: bool) -> bool:
    """Whether boosting's early stopping can hold out its validation split of `y`.

    The split is drawn as sklearn draws it (VALIDATION_FRACTION, rounded up); a stratified one
    needs every class twice and room for each class on both sides. Tables too small for that
    train every boosting round instead.
    """
    held_out = math.ceil(VALIDATION_FRACTION * len(y))
    if not stratified:
        return len(y) - held_out >= 2
    counts = np.unique(y, return_counts=True)[1]
    classes = len(counts)
    return bool(counts.min() >= 2 and held_out >= classes and len(y) - held_out >= classes)


class MixedEmbedding:
    """Maps rows to vectors whose Euclidean distance is the mixed-type distance of the rows.

    The squared distance is the sum over columns of: the squared difference of continuous values
    scaled by the reference range, 1 for differing labels (one-hot scaled by sqrt(1/2), missing
    being a label of its own), and for a continuous value missing on one side only, 1 plus the
    other side's squared scaled value. Ranges are learnt from the reference (training) rows.
    """

    def __init__(self, columns: list[Column]) -> None:
        self.columns = columns

    def fit(self, reference: pd.DataFrame, *others: pd.DataFrame) -> MixedEmbedding:
        """Learn ranges from `reference`; note which columns have missing values in any table."""
        self.lows_: dict[str, float] = {}
        self.spans_: dict[str, float] = {}
        self.missing_: dict[str, bool] = {}
        for column in self.columns:
            frames = (reference, *others)
            self.missing_[column.name] = any(bool(f[column.name].isna().any()) for f in frames)
            if is_discrete(column):
                continue
            values = as_float(reference[column.name], column)
            present = values[~np.isnan(values)]
            low = float(present.min()) if len(present) else 0.0
            high = float(present.max()) if len(present) else 1.0
            self.lows_[column.name] = low
            self.spans_[column.name] = high - low if high > low else 1.0
        return self

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """float32 matrix, one row per row of `df`."""
        blocks: list[np.ndarray] = []
        for column in self.columns:
            series = df[column.name]
            if is_discrete(column):
                width = len(labels(column)) + int(self.missing_[column.name])
                codes = as_codes(series, column)
                codes = np.where(codes < 0, width - 1, codes)
                block = np.zeros((len(df), width), dtype=np.float32)
                block[np.arange(len(df)), codes] = ONE_HOT_WEIGHT
                blocks.append(block)
                continue
            values = as_float(series, column)
            scaled = (values - self.lows_[column.name]) / self.spans_[column.name]
            blocks.append(np.nan_to_num(scaled, nan=0.0).astype(np.float32)[:, None])
            if self.missing_[column.name]:
                blocks.append(series.isna().to_numpy(dtype=np.float32)[:, None])
        return np.hstack(blocks)
