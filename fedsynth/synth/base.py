"""The Synthesizer API shared by every model, and the registry that maps names to models.

Modelled in the scikit-learn way: parameters in ``__init__``, fitted state in attributes with a
trailing underscore. A model works on the float view of `fedsynth.synth.encoding`; this base
class turns it into typed rows, enforces constraints and conditions, and writes model files.
Identifier and text columns are never modelled: `sample` fills identifier columns with fresh
surrogate tokens and leaves text columns null, so the output always has the schema's columns in
the schema's order.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from pydantic import TypeAdapter, ValidationError

from fedsynth.frame import conform
from fedsynth.schema import (
    CategoricalColumn,
    DatetimeColumn,
    IdentifierColumn,
    NumericalColumn,
    SchemaError,
    TableSchema,
)
from fedsynth.synth.artifact import Artifact, ArtifactError
from fedsynth.synth.conditions import Condition, parse_conditions
from fedsynth.synth.constraints import (
    ConstraintBase,
    ConstraintError,
    dump_constraints,
    parse_constraints,
)
from fedsynth.synth.encoding import (
    assemble,
    decode,
    encode,
    observed_decimals,
    observed_step,
    output_step,
    surrogate_identifiers,
)
from fedsynth.synth.sampling import draw_rows

Progress = Callable[[int, int], None]
"""Called with (units done, units in all) during long fits and samples."""

MODEL_MODULES: dict[str, str] = {
    "copula": "fedsynth.synth.copula",
    "mvn": "fedsynth.synth.mvn",
    "cart": "fedsynth.synth.cart",
    "dp-marginal": "fedsynth.synth.dp_marginal",
    "dp-copula": "fedsynth.synth.dp_copula",
    "tvae": "fedsynth.synth.tvae",
}
"""Where each model is defined: `REGISTRY` imports it on first lookup, not before."""


class ModelRegistry(Mapping[str, "type[Synthesizer]"]):
    """Model name -> class. Names are known up front and a model's module is imported when it is
    first looked up, so listing or checking names loads no scipy, scikit-learn or torch."""

    def __init__(self, modules: Mapping[str, str]) -> None:
        self._modules = dict(modules)
        self._classes: dict[str, type[Synthesizer]] = {}

    def add(self, cls: type[Synthesizer]) -> None:
        """Register `cls` under its `name` (a model outside MODEL_MODULES too)."""
        self._modules.setdefault(cls.name, cls.__module__)
        self._classes[cls.name] = cls

    def __getitem__(self, name: str) -> type[Synthesizer]:
        if name not in self._classes and name in self._modules:
            importlib.import_module(self._modules[name])
        return self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


REGISTRY = ModelRegistry(MODEL_MODULES)


class NotFittedError(RuntimeError):
    """sample() or to_artifact() on a model that has not been fitted."""


def register(cls: type[Synthesizer]) -> type[Synthesizer]:
    """Class decorator: make a model available by its `name` (CLI, job specs, model files)."""
    REGISTRY.add(cls)
    return cls


def synthesizer_class(name: str) -> type[Synthesizer]:
    """The model class registered as `name`; KeyError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no synthesizer called {name!r}; known: {sorted(REGISTRY)}") from None


def check_model_parameters(name: str, params: Mapping[str, Any]) -> None:
    """Refuse a parameter the model `name` does not take, or a value not of its type (1.5
    epochs, a word for a rate, true for a count), naming the parameter and what it takes."""
    cls = synthesizer_class(name)
    signature = inspect.signature(cls)
    unknown = sorted(set(params) - set(signature.parameters))
    if unknown:
        takes = [p for p in signature.parameters if p != "constraints"]
        known = f"its parameters are {', '.join(takes)}" if takes else "it takes no parameters"
        raise ValueError(f"{unknown[0]}: the {name!r} synthesizer has no such parameter; {known}")
    hints = typing.get_type_hints(cls.__init__)
    for key, value in params.items():
        if key == "constraints":
            continue
        try:
            TypeAdapter(hints[key]).validate_python(value, strict=True)
        except ValidationError:
            wanted = signature.parameters[key].annotation
            raise ValueError(
                f"{key}={value!r}: the {name!r} synthesizer takes {wanted} for {key} "
                f"(a {type(value).__name__} was given)"
            ) from None


MAX_ONE_HOT_CATEGORIES = 1000
"""Widest category the one-hot models (`mvn`, `tvae`) take."""


class Synthesizer(ABC):
    """Fit on typed rows, sample new rows, save to and load from a model file."""

    name: ClassVar[str]
    max_categories: ClassVar[int | None] = None
    """Values a categorical column may have, for models that one-hot encode (their size grows
    with it: a 10,000-value column made `mvn` take 5.7 GB); None: any number."""

    def __init__(self, *, constraints: list[Any] | None = None) -> None:
        self.constraints = list(constraints or [])

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters as JSON-compatible data (stored in model files)."""
        return {"constraints": dump_constraints(parse_constraints(self.constraints))}

    def fit(
        self, df: pd.DataFrame, schema: TableSchema, *, progress: Progress | None = None
    ) -> Self:
        """Learn the model from `df`, typed by `schema` (see `fedsynth.frame`)."""
        self._check_categories(schema)
        df = conform(df, schema).reset_index(drop=True)
        if len(df) == 0:
            raise ValueError("cannot fit a synthesizer on a table without rows")
        self.schema_ = schema
        self.constraints_ = self._bind_constraints(df, schema)
        self.rounding_ = _rounding(df, schema)
        self._fit(df, schema, progress)
        return self

    def _check_categories(self, schema: TableSchema) -> None:
        """Refuse, before any row is read, a category too wide for this model's encoding."""
        limit = self.max_categories
        if limit is None:
            return
        for column in schema.modelled_columns:
            if isinstance(column, CategoricalColumn) and len(column.domain) > limit:
                raise ValueError(
                    f"{self.name} one-hot encodes categories, and column {column.name!r} has "
                    f"{len(column.domain)} values, more than its {limit}: fit copula or cart "
                    "instead, or merge rare values into fewer in the schema"
                )

    def _bind_constraints(self, df: pd.DataFrame, schema: TableSchema) -> list[ConstraintBase]:
        bound = []
        for constraint in parse_constraints(self.constraints):
            learned = constraint.bind(schema).learn(df)
            violations = int((~learned.holds(df.copy())).sum())
            if violations:
                raise ConstraintError(
                    f"{learned.label}: {violations} of {len(df)} real rows break it; fix the "
                    "data or the constraint (a model cannot learn rules its data breaks)"
                )
            bound.append(learned)
        return bound

    def sample(
        self,
        n: int,
        *,
        seed: int | None = None,
        conditions: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
        allow_fewer: bool = False,
    ) -> pd.DataFrame:
        """`n` new rows; the same seed gives the same rows. Conditions fix values or ranges.

        When too few drawn rows meet the conditions and constraints, a `SamplingError` is raised;
        with `allow_fewer`, the rows found are returned with a `SamplingShortfall` warning.

        Identifier columns get unique surrogate tokens, drawn after the rows (see
        `_identifier_rng`).
        """
        self._check_fitted()
        parsed = parse_conditions(conditions, self.schema_)
        rng = np.random.default_rng(seed)
        schema = self.schema_

        def draw(m: int) -> pd.DataFrame:
            return self._typed(self._draw(m, rng, parsed), m)

        rules: list[Any] = [(c, c.holds) for c in self.constraints_]
        rules += [(c, lambda df, c=c: c.holds(df, schema)) for c in parsed]
        out = draw_rows(n, draw, rules, progress=progress, allow_fewer=allow_fewer)
        identifiers = [c.name for c in schema.columns if isinstance(c, IdentifierColumn)]
        if identifiers:
            tokens = _identifier_rng(rng, out)
            for name in identifiers:
                out[name] = pd.array(surrogate_identifiers(len(out), tokens), dtype="string")
        return out

    def _condition_interval(self, condition: Condition) -> tuple[float, float]:
        """The encoded values a model may draw for `condition`: those that decode into it."""
        column = self.schema_.column(condition.column)
        return condition.widened(output_step(column, self.rounding_[condition.column]))

    def _typed(self, encoded: dict[str, np.ndarray], n: int) -> pd.DataFrame:
        columns = {
            c.name: decode(encoded[c.name], c, self.rounding_[c.name])
            for c in self.schema_.modelled_columns
        }
        return assemble(columns, self.schema_, n)

    def to_artifact(self) -> Artifact:
        """The fitted model as JSON + arrays (see `fedsynth.synth.artifact`)."""
        self._check_fitted()
        state, arrays = self._state()
        body = {
            "params": self.get_params(),
            "schema": self.schema_.to_dict(),
            "constraints": dump_constraints(self.constraints_),
            "rounding": self.rounding_,
            "state": state,
        }
        return Artifact(kind="synthesizer", model=self.name, body=body, arrays=arrays)

    @classmethod
    def from_artifact(cls, artifact: Artifact, *, source: str = "<artifact>") -> Synthesizer:
        """Rebuild the fitted model an artifact holds, whatever its registered class."""
        if artifact.kind != "synthesizer":
            raise ArtifactError(f"{source}: holds {artifact.kind}, not a fitted synthesizer")
        try:
            model_cls = synthesizer_class(artifact.model)
        except KeyError as exc:
            raise ArtifactError(f"{source}: {exc.args[0]}") from exc
        body = artifact.body
        try:
            model = model_cls(**body["params"])
            model.schema_ = TableSchema.from_dict(body["schema"], source=source)
            model.constraints_ = parse_constraints(body["constraints"], source=source)
            model.rounding_ = {str(k): float(v) for k, v in body["rounding"].items()}
            if set(model.rounding_) != {c.name for c in model.schema_.modelled_columns}:
                raise ArtifactError(f"{source}: rounding does not cover the modelled columns")
            model._restore(body["state"], artifact.arrays)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, ArtifactError | SchemaError | ConstraintError):
                raise
            raise ArtifactError(
                f"{source}: the {artifact.model!r} model is invalid: {exc}"
            ) from exc
        return model

    def save(self, path: str | Path) -> None:
        """Write the fitted model to `path` atomically."""
        self.to_artifact().write(path)

    @staticmethod
    def load(path: str | Path) -> Synthesizer:
        """Read a model file written by `save`, whatever its model."""
        return Synthesizer.from_artifact(Artifact.read(path), source=str(path))

    def _check_fitted(self) -> None:
        if not hasattr(self, "schema_"):
            raise NotFittedError(f"this {self.name!r} synthesizer is not fitted; call fit() first")

    @abstractmethod
    def _fit(self, df: pd.DataFrame, schema: TableSchema, progress: Progress | None) -> None:
        """Learn from typed rows (already conformed)."""

    @abstractmethod
    def _draw(
        self, n: int, rng: np.random.Generator, conditions: list[Condition]
    ) -> dict[str, np.ndarray]:
        """`n` rows in the float view, one array per modelled column (NaN = null)."""

    @abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Fitted state as JSON-compatible data and named arrays."""

    @abstractmethod
    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Inverse of `_state`; raise ValueError/KeyError on anything inconsistent."""


def _identifier_rng(rng: np.random.Generator, rows: pd.DataFrame) -> np.random.Generator:
    """The generator of surrogate identifiers: the sampling generator's next draws mixed with a
    digest of the sampled rows. The same seed still gives the same tokens, and suppliers that
    sample their own models with a job's one seed do not give the same tokens to merged rows."""
    hashed = pd.util.hash_pandas_object(rows, index=False).to_numpy()
    digest = np.frombuffer(hashlib.sha256(hashed.tobytes()).digest(), dtype=np.uint32)
    return np.random.default_rng([*rng.integers(0, 2**32, size=4), *digest])


def _rounding(df: pd.DataFrame, schema: TableSchema) -> dict[str, float]:
    """Per modelled column: decimals of a numerical column, step in seconds of a datetime."""
    out = {}
    for column in schema.modelled_columns:
        values = encode(df[column.name], column)
        if isinstance(column, NumericalColumn):
            out[column.name] = float(observed_decimals(values))
        elif isinstance(column, DatetimeColumn):
            out[column.name] = observed_step(values)
        else:
            out[column.name] = 0.0
    return out
