"""Multivariate normal: the field's first baseline. One Gaussian over all columns, jointly.

Ordered columns and booleans (as 0/1) enter as standardised values, categories as one-hot
indicators, and every nullable column adds a null indicator (its value is imputed with the mean).
Sampling draws from the fitted Gaussian and reads back: argmax for categories, > 0.5 for null
indicators and for booleans once back on their 0/1 scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fedsynth.schema import BooleanColumn, CategoricalColumn, TableSchema
from fedsynth.synth.base import MAX_ONE_HOT_CATEGORIES, Progress, Synthesizer, register
from fedsynth.synth.conditions import Condition
from fedsynth.synth.encoding import cardinality, encode

_JITTER = 1e-9


@register
class MultivariateNormal(Synthesizer):
    """A single multivariate Gaussian over an indicator/standardised encoding of the table."""

    name = "mvn"
    max_categories = MAX_ONE_HOT_CATEGORIES

    def _fit(self, df: pd.DataFrame, schema: TableSchema, progress: Progress | None) -> None:
        self.center_ = {}
        self.scale_ = {}
        self.nullable_ = []
        blocks = []
        for column in schema.modelled_columns:
            values = encode(df[column.name], column)
            null = np.isnan(values)
            if isinstance(column, CategoricalColumn):
                codes = np.where(null, -1, values).astype(int)
                block = (codes[:, None] == np.arange(cardinality(column))[None, :]).astype(float)
            else:
                present = values[~null]
                center = float(present.mean()) if present.size else 0.0
                scale = float(present.std()) if present.size > 1 else 1.0
                self.center_[column.name] = center
                self.scale_[column.name] = scale if scale > 0 else 1.0
                standard = (np.where(null, center, values) - center) / self.scale_[column.name]
                block = standard[:, None]
            blocks.append(block)
            if null.any():
                self.nullable_.append(column.name)
                blocks.append(null[:, None].astype(float))
        data = np.hstack(blocks)
        self.mean_ = data.mean(axis=0)
        self.covariance_ = np.atleast_2d(np.cov(data, rowvar=False, bias=True))
        if progress is not None:
            progress(1, 1)

    def _draw(
        self, n: int, rng: np.random.Generator, conditions: list[Condition]
    ) -> dict[str, np.ndarray]:
        d = self.mean_.size
        chol = np.linalg.cholesky(self.covariance_ + np.eye(d) * _JITTER)
        data = self.mean_ + rng.standard_normal((n, d)) @ chol.T
        out = {}
        j = 0
        for column in self.schema_.modelled_columns:
            if isinstance(column, CategoricalColumn):
                k = cardinality(column)
                values = np.argmax(data[:, j : j + k], axis=1).astype(float)
                j += k
            else:
                values = data[:, j] * self.scale_[column.name] + self.center_[column.name]
                if isinstance(column, BooleanColumn):
                    values = (values > 0.5).astype(float)
                j += 1
            if column.name in self.nullable_:
                values[data[:, j] > 0.5] = np.nan
                j += 1
            out[column.name] = values
        return out

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state = {"center": self.center_, "scale": self.scale_, "nullable": self.nullable_}
        return state, {"mean": self.mean_, "covariance": self.covariance_}

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.center_ = {str(k): float(v) for k, v in state["center"].items()}
        self.scale_ = {str(k): float(v) for k, v in state["scale"].items()}
        self.nullable_ = [str(v) for v in state["nullable"]]
        names = [c.name for c in self.schema_.modelled_columns]
        if not set(self.nullable_) <= set(names):
            raise ValueError("null indicators name columns outside the schema")
        width = sum(
            cardinality(c) if isinstance(c, CategoricalColumn) else 1
            for c in self.schema_.modelled_columns
        ) + len(self.nullable_)
        mean = np.asarray(arrays["mean"], dtype=np.float64)
        cov = np.asarray(arrays["covariance"], dtype=np.float64)
        if mean.shape != (width,) or cov.shape != (width, width):
            raise ValueError(f"mean and covariance must have {width} dimensions")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
            raise ValueError("mean and covariance must be finite")
        self.mean_ = mean
        self.covariance_ = cov
