"""Sequential CART, as synthpop does it: each column from a tree on the columns before it.

Columns are visited in order. The first is drawn from its real values; every later one gets a
classification (discrete) or regression (ordered) tree on the columns already synthesized, and
a synthetic value is a real value drawn from the leaf the synthetic row reaches. Null is a value
like any other, so null rates and patterns carry over. `min_samples_leaf` is the privacy knob:
no value is drawn from a leaf holding fewer real rows. Trees are kept as plain arrays, so model
files need no pickle. Note that leaves hold real values: treat a CART model file as sensitive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from fedsynth.schema import TableSchema
from fedsynth.synth.base import Progress, Synthesizer, register
from fedsynth.synth.conditions import Condition
from fedsynth.synth.encoding import encode, is_discrete

DEFAULT_MIN_SAMPLES_LEAF = 10
_NULL_CODE = -1.0


@dataclass(frozen=True)
class LeafTree:
    """A fitted tree as arrays, with the real target values of each leaf (its pool)."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    start: np.ndarray
    count: np.ndarray
    pool: np.ndarray
    bandwidth: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Index of the leaf each row of `x` reaches (same rule as scikit-learn's float32 split)."""
        x = x.astype(np.float32).astype(np.float64)
        node = np.zeros(x.shape[0], dtype=np.int64)
        active = np.flatnonzero(self.left[node] >= 0)
        while active.size:
            current = node[active]
            value = x[active, self.feature[current]]
            go_left = np.where(
                np.isnan(value), self.missing_left[current], value <= self.threshold[current]
            )
            node[active] = np.where(go_left, self.left[current], self.right[current])
            active = active[self.left[node[active]] >= 0]
        return node

    def draw(self, x: np.ndarray, rng: np.random.Generator, smooth: bool) -> np.ndarray:
        """One real value from the leaf of each row (plus kernel noise when smoothing)."""
        leaf = self.apply(x) if x.shape[1] else np.zeros(x.shape[0], dtype=np.int64)
        pick = self.start[leaf] + np.floor(rng.random(leaf.size) * self.count[leaf]).astype(int)
        values = self.pool[pick].copy()
        if smooth:
            values += rng.standard_normal(leaf.size) * self.bandwidth[leaf]
        return values


@register
class SequentialCART(Synthesizer):
    """Sequential classification and regression trees (synthpop's default method)."""

    name = "cart"

    def __init__(
        self,
        *,
        min_samples_leaf: int = DEFAULT_MIN_SAMPLES_LEAF,
        smoothing: bool = False,
        visit_order: list[str] | None = None,
        max_depth: int | None = None,
        random_state: int = 0,
        constraints: list[Any] | None = None,
    ) -> None:
        super().__init__(constraints=constraints)
        self.min_samples_leaf = min_samples_leaf
        self.smoothing = smoothing
        self.visit_order = visit_order
        self.max_depth = max_depth
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        return {
            **super().get_params(),
            "min_samples_leaf": self.min_samples_leaf,
            "smoothing": self.smoothing,
            "visit_order": self.visit_order,
            "max_depth": self.max_depth,
            "random_state": self.random_state,
        }

    def _fit(self, df: pd.DataFrame, schema: TableSchema, progress: Progress | None) -> None:
        if self.min_samples_leaf < 1:
            raise ValueError(f"min_samples_leaf must be at least 1, not {self.min_samples_leaf}")
        self.order_ = self._order(schema)
        data = np.column_stack([encode(df[n], schema.column(n)) for n in self.order_])
        self.trees_ = []
        for j, name in enumerate(self.order_):
            discrete = is_discrete(schema.column(name))
            self.trees_.append(self._grow(data[:, :j], data[:, j], discrete))
            if progress is not None:
                progress(j + 1, len(self.order_))

    def _order(self, schema: TableSchema) -> list[str]:
        modelled = [c.name for c in schema.modelled_columns]
        if self.visit_order is None:
            return modelled
        if sorted(self.visit_order) != sorted(modelled):
            raise ValueError(
                f"visit_order must list every modelled column once: {modelled}; "
                f"got {self.visit_order}"
            )
        return list(self.visit_order)

    def _grow(self, x: np.ndarray, y: np.ndarray, discrete: bool) -> LeafTree:
        null = np.isnan(y)
        if x.shape[1] == 0 or y.size < 2 * self.min_samples_leaf or null.all():
            return _single_leaf(y, self._smooth(discrete))
        params = {
            "min_samples_leaf": self.min_samples_leaf,
            "max_depth": self.max_depth,
            "random_state": self.random_state,
        }
        if discrete:
            model: Any = DecisionTreeClassifier(**params)
            model.fit(x, np.nan_to_num(y, nan=_NULL_CODE).astype(int))
        else:
            model = DecisionTreeRegressor(**params)
            model.fit(x, _regression_target(y, null))
        t = model.tree_
        structure = {
            "left": t.children_left.astype(np.int64),
            "right": t.children_right.astype(np.int64),
            "feature": np.maximum(t.feature, 0).astype(np.int64),
            "threshold": t.threshold.astype(np.float64),
            "missing_left": t.missing_go_to_left.astype(bool),
        }
        empty = np.empty(0, dtype=np.int64)
        leaves = LeafTree(**structure, start=empty, count=empty, pool=empty, bandwidth=empty).apply(
            x
        )
        start, count, pool, bandwidth = _pools(leaves, y, t.node_count, self._smooth(discrete))
        return LeafTree(**structure, start=start, count=count, pool=pool, bandwidth=bandwidth)

    def _smooth(self, discrete: bool) -> bool:
        return self.smoothing and not discrete

    def _draw(
        self, n: int, rng: np.random.Generator, conditions: list[Condition]
    ) -> dict[str, np.ndarray]:
        data = np.empty((n, len(self.order_)))
        for j, (name, tree) in enumerate(zip(self.order_, self.trees_, strict=True)):
            smooth = self._smooth(is_discrete(self.schema_.column(name)))
            data[:, j] = tree.draw(data[:, :j], rng, smooth)
        return {name: data[:, j] for j, name in enumerate(self.order_)}

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {}
        for j, tree in enumerate(self.trees_):
            for field in _TREE_FIELDS:
                arrays[f"t{j}_{field}"] = getattr(tree, field)
        return {"order": self.order_}, arrays

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        order = [str(n) for n in state["order"]]
        if sorted(order) != sorted(c.name for c in self.schema_.modelled_columns):
            raise ValueError("the visiting order does not match the modelled columns")
        trees = []
        for j in range(len(order)):
            tree = LeafTree(**{f: arrays[f"t{j}_{f}"] for f in _TREE_FIELDS})
            _check_tree(tree, j)
            trees.append(tree)
        self.order_ = order
        self.trees_ = trees


_TREE_FIELDS = (
    "left",
    "right",
    "feature",
    "threshold",
    "missing_left",
    "start",
    "count",
    "pool",
    "bandwidth",
)


def _pools(
    leaves: np.ndarray, y: np.ndarray, nodes: int, smooth: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Real values grouped by leaf: (start, count, pool, bandwidth) per node."""
    order = np.argsort(leaves, kind="stable")
    count = np.bincount(leaves, minlength=nodes).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    pool = y[order]
    bandwidth = np.zeros(nodes)
    if smooth:
        for node in np.flatnonzero(count):
            bandwidth[node] = _bandwidth(pool[start[node] : start[node] + count[node]])
    return start, count, pool, bandwidth


def _single_leaf(y: np.ndarray, smooth: bool) -> LeafTree:
    """A tree without splits: draws from all real values of the column."""
    start, count, pool, bandwidth = _pools(np.zeros(y.size, dtype=np.int64), y, 1, smooth)
    return LeafTree(
        left=np.full(1, -1, dtype=np.int64),
        right=np.full(1, -1, dtype=np.int64),
        feature=np.zeros(1, dtype=np.int64),
        threshold=np.zeros(1),
        missing_left=np.zeros(1, dtype=bool),
        start=start,
        count=count,
        pool=pool,
        bandwidth=bandwidth,
    )


def _regression_target(y: np.ndarray, null: np.ndarray) -> np.ndarray:
    """The values (nulls at the mean) plus, when there are nulls, a null indicator as a second
    output scaled like the values, so that splits also separate where nulls occur."""
    mean = float(y[~null].mean())
    filled = np.where(null, mean, y)
    if not null.any():
        return filled
    spread = float(y[~null].std()) or 1.0
    return np.column_stack([filled, null * 2.0 * spread])


def _bandwidth(values: np.ndarray) -> float:
    """Silverman's rule of thumb (R's bw.nrd0), as synthpop uses for smoothing."""
    values = values[~np.isnan(values)]
    if values.size < 2:
        return 0.0
    sd = values.std(ddof=1)
    iqr = np.subtract(*np.percentile(values, [75, 25])) / 1.34
    spread = min(sd, iqr) if iqr > 0 else sd
    return float(0.9 * spread * values.size ** (-0.2))


def _check_tree(tree: LeafTree, j: int) -> None:
    nodes = tree.left.size
    shapes = [tree.right, tree.feature, tree.threshold, tree.missing_left, tree.start, tree.count]
    if any(a.shape != (nodes,) for a in shapes) or tree.bandwidth.shape != (nodes,):
        raise ValueError(f"tree {j}: node arrays differ in length")
    inner = tree.left >= 0
    for child in (tree.left[inner], tree.right[inner]):
        if np.any(child <= np.flatnonzero(inner)) or np.any(child >= nodes):
            raise ValueError(f"tree {j}: a child index points outside the tree or backwards")
    if np.any(tree.feature[inner] < 0) or np.any(tree.feature[inner] >= max(j, 1)):
        raise ValueError(f"tree {j}: splits on a column that is not synthesized before it")
    if np.any(tree.count < 0) or np.any(tree.start + tree.count > tree.pool.size):
        raise ValueError(f"tree {j}: leaf pools point outside the stored values")
    if np.any(tree.count[~inner] < 1):
        raise ValueError(f"tree {j}: has leaves without values")
