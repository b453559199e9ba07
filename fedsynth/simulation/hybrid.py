"""Hybrid synthesis: a fitted synthesizer with knowledge-based overrides of one column's shares.

`HybridSampler(model, "diagnosis", {"rare_x": 0.2}).sample(n)` returns n rows in which exactly
round(0.2 n) rows have diagnosis rare_x. Those rows come from the model's conditional sampling
(`conditions={"diagnosis": "rare_x"}`), so every other column keeps the model's structure given
rare_x; the remaining rows are the model's own rows outside the overridden categories, so they
keep the model's relative shares and structure too. Works on categorical columns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedsynth.documents import describe_problems
from fedsynth.schema import CategoricalColumn
from fedsynth.synth.base import Synthesizer
from fedsynth.yaml12 import load_yaml

MAX_ROUNDS = 100
"""Batches drawn for the rows outside the overridden categories before giving up."""

Progress = Callable[[int, int], None]
"""Called with (rows done, rows in all)."""


class HybridError(ValueError):
    """Overrides that do not fit the model, or rows the model cannot produce."""


class HybridSpec(BaseModel):
    """The overrides a person writes down: a column and the shares some of its values get."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = Field(min_length=1, description="A categorical column of the model.")
    shares: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        min_length=1, description="Share of the output rows per overridden value, e.g. {x: 0.2}."
    )

    @field_validator("shares", mode="before")
    @classmethod
    def _text_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _at_most_one(self) -> HybridSpec:
        total = sum(self.shares.values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"shares sum to {total:g}; they may sum to at most 1")
        return self

    @classmethod
    def load(cls, path: str | Path) -> HybridSpec:
        """Read overrides from YAML; every problem is listed."""
        path = Path(path)
        try:
            data = load_yaml(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise HybridError(f"{path}: overrides file not found") from exc
        except yaml.YAMLError as exc:
            raise HybridError(f"{path}: not valid YAML: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise HybridError(describe_problems(str(path), exc, "overrides", cls, data)) from exc


class HybridSampler:
    """Samples from a fitted synthesizer with some categories of `column` set to `shares`."""

    def __init__(self, model: Synthesizer, column: str, shares: Mapping[str, float]) -> None:
        self.model = model
        self.column = column
        self.shares = dict(shares)

    @classmethod
    def from_spec(cls, model: Synthesizer, spec: HybridSpec) -> HybridSampler:
        """A sampler applying the overrides a person wrote in a `HybridSpec`."""
        return cls(model, spec.column, spec.shares)

    def sample(
        self, n: int, *, seed: int | None = None, progress: Progress | None = None
    ) -> pd.DataFrame:
        """`n` rows with the overridden shares exact (to a row); the same seed, the same rows."""
        try:
            spec = HybridSpec(column=self.column, shares=self.shares)
        except ValidationError as exc:
            problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            raise HybridError(f"overrides of {self.column!r}: {problems}") from exc
        domain = self._domain()
        unknown = sorted(set(spec.shares) - set(domain))
        if unknown:
            raise HybridError(
                f"overrides of {unknown}: not in the domain of {self.column!r}: {domain}"
            )
        counts = _counts(n, list(spec.shares.values()))
        rest = n - sum(counts)
        if rest and set(spec.shares) >= set(domain):
            raise HybridError(
                f"every value of {self.column!r} is overridden, so the shares must sum to 1"
            )
        seeds = np.random.SeedSequence(seed).spawn(len(counts) + 2)
        parts: list[pd.DataFrame] = []
        done = 0
        for value, count, child in zip(spec.shares, counts, seeds, strict=False):
            if count:
                parts.append(
                    self.model.sample(count, seed=_int(child), conditions={self.column: value})
                )
            done += count
            if progress is not None:
                progress(done, n)
        parts.append(self._others(rest, set(spec.shares), seeds[-2], done, n, progress))
        rows = pd.concat(parts, ignore_index=True)
        order = np.random.default_rng(seeds[-1]).permutation(len(rows))
        return rows.iloc[order].reset_index(drop=True)

    def _domain(self) -> list[str]:
        schema = getattr(self.model, "schema_", None)
        if schema is None:
            raise HybridError("the model is not fitted; fit it or load a model file first")
        if self.column not in schema.names:
            raise HybridError(f"no column {self.column!r}; the model's columns: {schema.names}")
        column = schema.column(self.column)
        if not isinstance(column, CategoricalColumn):
            raise HybridError(
                f"column {self.column!r} is {column.kind}; overrides work on categorical columns"
            )
        return list(column.domain)

    def _others(
        self,
        m: int,
        overridden: set[str],
        seed: np.random.SeedSequence,
        done: int,
        n: int,
        progress: Progress | None,
    ) -> pd.DataFrame:
        """`m` of the model's rows whose value of the column is not an overridden one."""
        kept: list[pd.DataFrame] = []
        got, drawn, accepted = 0, 0, 0
        for child in seed.spawn(MAX_ROUNDS):
            if got >= m:
                break
            rate = (accepted + 1) / (drawn + 1) if drawn else 1.0
            size = int((m - got) / rate * 1.1) + 16
            batch = self.model.sample(size, seed=_int(child))
            keep = ~batch[self.column].astype(object).isin(overridden).to_numpy()
            drawn, accepted = drawn + size, accepted + int(keep.sum())
            chosen = batch[keep].head(m - got)
            kept.append(chosen)
            got += len(chosen)
            if progress is not None:
                progress(done + got, n)
        if got < m:
            raise HybridError(
                f"the model gave only {got} of {m} rows outside {sorted(overridden)} in "
                f"{drawn} draws; it almost never produces other values of {self.column!r}"
            )
        return pd.concat(kept, ignore_index=True) if kept else self.model.sample(0, seed=0)


def _counts(n: int, shares: list[float]) -> list[int]:
    """Rows per overridden value: shares of n rounded by largest remainder, summing to <= n."""
    quotas = [s * n for s in shares] + [max(0.0, 1.0 - sum(shares)) * n]
    counts = [int(np.floor(q)) for q in quotas]
    order = sorted(range(len(quotas)), key=lambda i: quotas[i] - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts[:-1]


def _int(seed: np.random.SeedSequence) -> int:
    return int(seed.generate_state(1)[0])
