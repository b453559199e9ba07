"""`Simulator`: draws rows from a `SimulationSpec`, parents before children, then missingness.

Every variable draws from its own random stream, derived from the seed and the variable's name,
so the same seed gives the same table, and adding a variable leaves the others' values as they
were. The result has the spec's schema (`SimulationSpec.table_schema`) and its pandas dtypes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import pandas as pd

from fedsynth.expressions import Expression, ExpressionError
from fedsynth.frame import conform
from fedsynth.prep.population import FEMALE_NAMES, MALE_NAMES, SURNAMES
from fedsynth.simulation.distributions import Distribution
from fedsynth.simulation.spec import (
    BooleanVariable,
    CategoricalVariable,
    DateVariable,
    NameVariable,
    NumberSource,
    NumericalVariable,
    SequenceVariable,
    SimulationSpec,
    VariableBase,
)

MAX_REDRAWS = 200
"""Rounds of redrawing the noise of values outside their bounds before giving up."""

Progress = Callable[[int, int], None]
"""Called with (variables done, variables in all)."""

_PURPOSES = {"value": 0, "missing": 1}
_NAME_LISTS = {"female": FEMALE_NAMES, "male": MALE_NAMES, "last": SURNAMES}


class SimulationError(ValueError):
    """A valid spec whose rows cannot be drawn (bounds never met, an equation without a value)."""


class Simulator:
    """Samples tables from a simulation spec; no fitting, the spec is the model."""

    def __init__(self, spec: SimulationSpec) -> None:
        self.spec = spec

    def sample(
        self, n: int, *, seed: int | None = None, progress: Progress | None = None
    ) -> pd.DataFrame:
        """`n` rows typed by the spec's schema; the same seed gives the same rows."""
        if n < 0:
            raise SimulationError(f"cannot simulate {n} rows; ask for zero or more")
        schema = self.spec.table_schema()
        if n == 0:
            return conform(
                pd.DataFrame({c: pd.Series([], dtype=object) for c in schema.names}), schema
            )
        root = np.random.SeedSequence(seed)
        index = pd.RangeIndex(n)
        expressions = self.spec.expressions()
        drawn: dict[str, pd.Series] = {}
        order = self.spec.order()
        total = len(order) + 1
        for done, variable in enumerate(order, start=1):
            draw = _Draw(variable.name, index, drawn, expressions, _stream(root, variable.name))
            drawn[variable.name] = draw.variable(variable)
            if progress is not None:
                progress(done, total)
        table = pd.DataFrame({v.name: drawn[v.name] for v in self.spec.variables}, index=index)
        blanks = {
            v.name: _missing_mask(v, table, expressions, _stream(root, v.name, "missing"))
            for v in self.spec.variables
            if v.missing is not None
        }
        for name, mask in blanks.items():
            table[name] = table[name].astype(object).where(~mask, None)
        if progress is not None:
            progress(total, total)
        return conform(table, schema)


def _stream(root: np.random.SeedSequence, name: str, purpose: str = "value") -> np.random.Generator:
    key = (zlib.crc32(name.encode("utf-8")), _PURPOSES[purpose])
    return np.random.default_rng(np.random.SeedSequence(root.entropy, spawn_key=key))


class _Draw:
    """Draws one variable given the variables drawn before it."""

    def __init__(
        self,
        name: str,
        index: pd.RangeIndex,
        drawn: dict[str, pd.Series],
        expressions: dict[tuple[str, str], Expression],
        rng: np.random.Generator,
    ) -> None:
        self.name = name
        self.index = index
        self.n = len(index)
        self.drawn = drawn
        self.expressions = expressions
        self.rng = rng

    def variable(self, v: VariableBase) -> pd.Series:
        if isinstance(v, CategoricalVariable):
            return self.categorical(v)
        if isinstance(v, BooleanVariable):
            return self.boolean(v)
        if isinstance(v, NumericalVariable):
            return self.numerical(v)
        if isinstance(v, DateVariable):
            return self.date(v)
        if isinstance(v, NameVariable):
            return self.person_name(v)
        if isinstance(v, SequenceVariable):
            numbers = np.arange(v.start, v.start + self.n)
            return pd.Series([f"{v.prefix}{i:0{v.width}d}" for i in numbers], index=self.index)
        raise SimulationError(f"variable {self.name!r}: unknown variable type {type(v).__name__}")

    def categorical(self, v: CategoricalVariable) -> pd.Series:
        domain = v.domain()
        out = np.full(self.n, None, dtype=object)
        if v.probabilities is not None:
            out[:] = self.choose(domain, v.probabilities, self.n)
            return pd.Series(out, index=self.index)
        parents = [_text(self.drawn[p]) for p in v.given]
        assigned = np.zeros(self.n, dtype=bool)
        for row in v.table:
            mask = np.ones(self.n, dtype=bool)
            for parent, values in zip(v.given, parents, strict=True):
                mask &= values == row.when[parent]
            out[mask] = self.choose(domain, row.probabilities, int(mask.sum()))
            assigned |= mask
        if v.otherwise is not None and not assigned.all():
            out[~assigned] = self.choose(domain, v.otherwise, int((~assigned).sum()))
        return pd.Series(out, index=self.index)

    def choose(self, domain: list[str], probabilities: dict[str, float], size: int) -> np.ndarray:
        p = np.array([probabilities.get(c, 0.0) for c in domain], dtype=np.float64)
        return self.rng.choice(np.array(domain, dtype=object), size=size, p=p / p.sum())

    def boolean(self, v: BooleanVariable) -> pd.Series:
        if v.probability is not None:
            p = np.full(self.n, v.probability)
        else:
            p = 1.0 / (1.0 + np.exp(-self.evaluate("logit")))
        return pd.Series(self.rng.random(self.n) < p, index=self.index, dtype="boolean")

    def numerical(self, v: NumericalVariable) -> pd.Series:
        low = -np.inf if v.bounds is None or v.bounds.min is None else v.bounds.min
        high = np.inf if v.bounds is None or v.bounds.max is None else v.bounds.max
        outside = "clip" if v.bounds is None else v.bounds.outside

        def rounded(values: np.ndarray) -> np.ndarray:
            if v.dtype == "int":
                return np.round(values)
            return values if v.decimals is None else np.round(values, v.decimals)

        def out_of_bounds(values: np.ndarray) -> np.ndarray:
            r = rounded(values)
            return (r < low) | (r > high)

        values = self.number(v, "", out_of_bounds, outside, f"[{low}, {high}]")
        return pd.Series(np.clip(rounded(values), low, high), index=self.index)

    def date(self, v: DateVariable) -> pd.Series:
        fixed = v.origin_date()
        if fixed is None:
            origin = self.drawn[v.origin].to_numpy(dtype="datetime64[ns]")
        else:
            origin = np.full(self.n, np.datetime64(fixed.isoformat(), "ns"))
        low = np.datetime64(v.min.isoformat(), "ns") if v.min else None
        high = np.datetime64(v.max.isoformat(), "ns") if v.max else None

        def dates(days: np.ndarray) -> np.ndarray:
            return origin + np.round(days).astype("int64").astype("timedelta64[D]")

        def out_of_bounds(days: np.ndarray) -> np.ndarray:
            d = dates(days)
            bad = np.zeros(len(d), dtype=bool)
            if low is not None:
                bad |= d < low
            if high is not None:
                bad |= d > high
            return bad

        days = self.number(v.days, "days.", out_of_bounds, v.outside, f"[{v.min}, {v.max}]")
        result = dates(days)
        if low is not None or high is not None:
            result = np.clip(result, low, high)
        return pd.Series(result, index=self.index)

    def number(
        self,
        source: NumberSource,
        prefix: str,
        out_of_bounds: Callable[[np.ndarray], np.ndarray],
        outside: str,
        bounds: str,
    ) -> np.ndarray:
        """Values of a number source; with `outside: resample` the noise is redrawn until inside."""
        noise: Distribution | None
        if source.distribution is not None:
            base, noise = np.zeros(self.n), source.distribution
        else:
            base, noise = self.evaluate(f"{prefix}equation"), source.noise
        values = base + (noise.draw(self.n, self.rng) if noise is not None else 0.0)
        if outside == "clip":
            return values
        bad = out_of_bounds(values)
        for _ in range(MAX_REDRAWS):
            if noise is None or not bad.any():
                break
            values[bad] = base[bad] + noise.draw(int(bad.sum()), self.rng)
            bad = out_of_bounds(values)
        if bad.any():
            raise SimulationError(
                f"variable {self.name!r}: {int(bad.sum())} of {self.n} values stay outside "
                f"{bounds} after {MAX_REDRAWS} redraws of the noise; widen the bounds, change "
                "the distribution or equation, or set 'outside: clip'"
            )
        return values

    def person_name(self, v: NameVariable) -> pd.Series:
        if v.part == "last":
            names = self.rng.choice(_NAME_LISTS["last"], self.n)
        elif v.sex is None:
            both = _NAME_LISTS["female"] + _NAME_LISTS["male"]
            names = self.rng.choice(both, self.n)
        else:
            female = np.isin(_text(self.drawn[v.sex]), v.female)
            names = np.where(
                female,
                self.rng.choice(_NAME_LISTS["female"], self.n),
                self.rng.choice(_NAME_LISTS["male"], self.n),
            )
        return pd.Series(np.char.title(names.astype(str)), index=self.index, dtype=object)

    def evaluate(self, where: str) -> np.ndarray:
        """A numeric expression of this variable as float64; every row must get a value."""
        expression = self.expressions[(self.name, where)]
        env = pd.DataFrame({c: self.drawn[c] for c in sorted(expression.columns)}, index=self.index)
        try:
            result = expression.evaluate(env)
        except ExpressionError as exc:
            raise SimulationError(f"variable {self.name!r}: {where}: {exc}") from exc
        if pd.api.types.is_bool_dtype(result.dtype) or not pd.api.types.is_numeric_dtype(
            result.dtype
        ):
            raise SimulationError(
                f"variable {self.name!r}: {where} {expression.text!r} gives {result.dtype} "
                "values, not numbers"
            )
        values = result.to_numpy(dtype=np.float64, na_value=np.nan)
        broken = ~np.isfinite(values)
        if broken.any():
            raise SimulationError(
                f"variable {self.name!r}: {where} {expression.text!r} has no finite value for "
                f"{int(broken.sum())} of {self.n} rows (e.g. a division by zero or the log of "
                "a negative number)"
            )
        return values


def _missing_mask(
    v: VariableBase,
    table: pd.DataFrame,
    expressions: dict[tuple[str, str], Expression],
    rng: np.random.Generator,
) -> np.ndarray:
    missing = v.missing
    eligible = np.ones(len(table), dtype=bool)
    if missing is None:
        return ~eligible
    if missing.when is not None:
        expression = expressions[(v.name, "missing.when")]
        try:
            holds = expression.evaluate(table)
        except ExpressionError as exc:
            raise SimulationError(f"variable {v.name!r}: missing.when: {exc}") from exc
        if not pd.api.types.is_bool_dtype(holds.dtype):
            raise SimulationError(
                f"variable {v.name!r}: missing.when {missing.when!r} must be true or false"
            )
        eligible = holds.fillna(False).to_numpy(dtype=bool)
    return eligible & (rng.random(len(table)) < missing.rate)


def _text(series: pd.Series) -> np.ndarray:
    """Values as the text a table row or a `female` list names them by ('true', 'M', ...)."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return np.where(series.to_numpy(dtype=bool), "true", "false").astype(object)
    return series.astype(object).map(str).to_numpy()
