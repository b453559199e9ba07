"""A small, safe row-predicate language for custom constraints: comparisons, and/or/not, math.

Expressions such as ``"bmi < 60 or age >= 18"`` are parsed with `ast` and only a whitelist of
nodes is evaluated, column-wise on a DataFrame, so a job spec can never run arbitrary code.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


class ExpressionError(ValueError):
    """An expression that uses something outside the predicate language."""


def parse_predicate(expression: str, columns: list[str]) -> ast.Expression:
    """Parse and check `expression`; ExpressionError names the offending part."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"predicate {expression!r} is not a valid expression: {exc}") from exc
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in columns:
            raise ExpressionError(
                f"predicate {expression!r} names {node.id!r}, which is not a column; "
                f"columns: {columns}"
            )
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(
                f"predicate {expression!r} uses {type(node).__name__}, which is not allowed; "
                "use column names, numbers, strings, comparisons, and/or/not and + - * / %"
            )
    return tree


def evaluate_predicate(tree: ast.Expression, df: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows where the predicate holds (a null makes it false)."""
    result = _eval(tree.body, df)
    if np.isscalar(result):
        return np.full(len(df), bool(result))
    return pd.Series(result).fillna(False).astype(bool).to_numpy()


def _eval(node: ast.AST, df: pd.DataFrame) -> Any:
    if isinstance(node, ast.Name):
        series = df[node.id]
        if isinstance(series.dtype, pd.CategoricalDtype):
            return series.astype("object")
        return series.astype("float64") if series.dtype.kind in "iub" else series
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, df) for e in node.elts]
    if isinstance(node, ast.BoolOp):
        values = [_mask(_eval(v, df), len(df)) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        return combine.reduce(values)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, df)
        if isinstance(node.op, ast.Not):
            return ~_mask(operand, len(df))
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, df), _eval(node.right, df))
    assert isinstance(node, ast.Compare)
    left = _eval(node.left, df)
    mask = np.ones(len(df), dtype=bool)
    for op, comparator in zip(node.ops, node.comparators, strict=True):
        right = _eval(comparator, df)
        if isinstance(op, ast.In | ast.NotIn):
            hit = _mask(pd.Series(left).isin(right), len(df))
            mask &= hit if isinstance(op, ast.In) else ~hit
        else:
            mask &= _mask(_COMPARE[type(op)](left, right), len(df))
        left = right
    return mask


def _mask(value: Any, n: int) -> np.ndarray:
    if np.isscalar(value):
        return np.full(n, bool(value))
    return pd.Series(value).fillna(False).astype(bool).to_numpy()


_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    *_BINARY,
    ast.Compare,
    *_COMPARE,
    ast.In,
    ast.NotIn,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.List,
    ast.Tuple,
)
