"""Declared probability distributions of a simulation: pydantic documents and their samplers.

Each family is a small model (written by people in YAML, discriminated by `family`) with a
`draw(n, rng)` method; the parameter checks say which parameter is wrong and why.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Family(BaseModel, ABC):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @abstractmethod
    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` independent draws as float64."""


class Normal(_Family):
    """Gaussian with mean `mean` and standard deviation `sd`."""

    family: Literal["normal"] = "normal"
    mean: float = Field(0.0, allow_inf_nan=False)
    sd: float = Field(1.0, gt=0, allow_inf_nan=False)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(self.mean, self.sd, n)


class LogNormal(_Family):
    """exp(N(mean_log, sd_log)): positive and right-skewed (incomes, lab values)."""

    family: Literal["lognormal"] = "lognormal"
    mean_log: float = Field(0.0, allow_inf_nan=False)
    sd_log: float = Field(1.0, gt=0, allow_inf_nan=False)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.lognormal(self.mean_log, self.sd_log, n)


class Uniform(_Family):
    """Every value in [low, high) equally likely."""

    family: Literal["uniform"] = "uniform"
    low: float = Field(0.0, allow_inf_nan=False)
    high: float = Field(1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.low >= self.high:
            raise ValueError(f"uniform: low {self.low} must be below high {self.high}")
        return self

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low, self.high, n)


class Exponential(_Family):
    """Waiting times with mean `scale`."""

    family: Literal["exponential"] = "exponential"
    scale: float = Field(1.0, gt=0, allow_inf_nan=False)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.exponential(self.scale, n)


class Gamma(_Family):
    """Gamma with `shape` and `scale` (mean shape * scale)."""

    family: Literal["gamma"] = "gamma"
    shape: float = Field(gt=0, allow_inf_nan=False)
    scale: float = Field(1.0, gt=0, allow_inf_nan=False)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.gamma(self.shape, self.scale, n)


class Poisson(_Family):
    """Counts with mean `rate`."""

    family: Literal["poisson"] = "poisson"
    rate: float = Field(gt=0, allow_inf_nan=False)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.poisson(self.rate, n).astype(np.float64)


class Triangular(_Family):
    """Between `low` and `high`, most likely at `mode` (an expert's min / best guess / max)."""

    family: Literal["triangular"] = "triangular"
    low: float = Field(allow_inf_nan=False)
    mode: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Triangular:
        if not self.low <= self.mode <= self.high or self.low == self.high:
            raise ValueError(
                f"triangular: need low <= mode <= high and low < high, got "
                f"{self.low}, {self.mode}, {self.high}"
            )
        return self

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.triangular(self.low, self.mode, self.high, n)


Distribution = Annotated[
    Normal | LogNormal | Uniform | Exponential | Gamma | Poisson | Triangular,
    Field(discriminator="family"),
]
