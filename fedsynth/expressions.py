"""The one safe expression language of fedsynth, parsed with `ast` into an allow-list.

Used for derived columns (prep), structural equations (simulation) and row predicates
(synthesizer constraints).

Expressions read like Python (`weight / (height / 100) ** 2`, `age(birth_date, "2024-01-01")`,
`"adult" if age >= 18 else "minor"`, `sex in ["F", "M"]`) but only the node types and functions
listed here exist: no attributes, subscripts, lambdas, comprehensions or imports, and nothing is
ever `eval`-ed. Evaluation is vectorized over pandas Series; arithmetic is numeric only (so
`"a" * 10**9` and `2 ** 10 ** 10` cannot exhaust memory or time).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MAX_NODES = 200

Value = Any
"""A pandas Series aligned with the frame, or a scalar that broadcasts."""


class ExpressionError(ValueError):
    """An expression that is not allowed or cannot be evaluated; says where and why."""


class Node:
    """One node of a parsed expression tree."""

    def evaluate(self, env: Mapping[str, pd.Series]) -> Value:
        raise ExpressionError(f"{type(self).__name__} cannot be evaluated")

    def columns(self) -> set[str]:
        return set()


@dataclass(frozen=True)
class Const(Node):
    value: Any

    def evaluate(self, env: Mapping[str, pd.Series]) -> Value:
        return self.value


@dataclass(frozen=True)
class ColumnRef(Node):
    name: str

    def evaluate(self, env: Mapping[str, pd.Series]) -> Value:
        if self.name not in env:
            raise ExpressionError(f"unknown column {self.name!r}; known: {sorted(env)}")
        return env[self.name]

    def columns(self) -> set[str]:
        return {self.name}


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: Node

    def evaluate(self, env: Mapping[str, pd.Series]) -> Value:
        value = self.operand.evaluate(env)
        if self.op == "not":
            return ~_boolean(value) if isinstance(value, pd.Series) else not value
        number = _numeric(value, self.op)
        return -number if self.op == "-" else number

    def columns(self) -> set[str]:
        return self.operand.columns()


@dataclass(frozen=True)
class Binary(Node):
    op: str
    left: Node
    right: Node

    def evaluate(self, env: Mapping[str, pd.Series]) -> Value:
        left = _numeric(self.left.evaluate(env), self.op)
        right = _numeric(self.right.evaluate(env), self.op)
        with np.errstate(all="ignore"):
            if self.op == "**":
                return np.power(_as_float(left), _as_float(right))
            if self.op in ("/", "//", "%"):
                return _ARITHMETIC[self.op](_as_float(left), _as_float(right))
            return _ARITHMETIC[self.op](left, right)

    def columns(self) -> set[str]:
        return self.left.columns() | self.right.columns()


@dataclass(frozen=True)
class Comparison(Node):
    op: str
    left: Node
    right: Node

    def evaluate(self, env: Mapping[str, pd.Series]) -> Value:
        left, right = self.left.evaluate(env), self.right.evaluate(env)
        if isinstance(left, str) and isinstance(right, pd.Series) and _is_datetime(right):
            left = _timestamp(left)
        if isinstance(right, str) and isinstance(left, pd.Series) and _is_datetime(left):
            right = _timestamp(right)
        result = _COMPARISONS[self.op](left, right)
        if not isinstance(result, pd.Series):
            return result
        unknown = pd.Series(False, index=result.index)
        for side in (left, right):
            if isinstance(side, pd.Series):
                unknown |= side.isna()
        return result.astype("boolean").mask(unknown)

    def columns(self) -> set[str]:
        return self.left.columns() | self.right.columns()


@dataclass(frozen=True)
class Membership(Node):
    """`value in [constants]` (or `not in`): null where the value is null."""

    value: Node
    choices: tuple[Value, ...]
    negated: bool

    def evaluate(self, env: Mapping[str, pd.Series]) -> Value:
        value = self.value.evaluate(env)
        if not isinstance(value, pd.Series):
            return (value in self.choices) != self.negated
        hit = value.astype("object").isin(self.choices)
        return (hit != self.negated).astype("boolean").mask(value.isna())

    def columns(self) -> set[str]:
        return self.value.columns()


@dataclass(frozen=True)
class Logical(Node):
    op: str
    operands: tuple[Node, ...]

    def evaluate(self, env: Mapping[str, pd.Series]) -> Value:
        values = [_boolean(v.evaluate(env)) for v in self.operands]
        result = values[0]
        for value in values[1:]:
            result = (result & value) if self.op == "and" else (result | value)
        return result

    def columns(self) -> set[str]:
        return set().union(*(o.columns() for o in self.operands))


@dataclass(frozen=True)
class Conditional(Node):
    condition: Node
    then: Node
    otherwise: Node

    def evaluate(self, env: Mapping[str, pd.Series]) -> Value:
        condition = self.condition.evaluate(env)
        then, otherwise = self.then.evaluate(env), self.otherwise.evaluate(env)
        if not isinstance(condition, pd.Series):
            return then if condition else otherwise
        index = condition.index
        mask = _boolean(condition).fillna(False).astype(bool)
        then_s, otherwise_s = _broadcast(then, index), _broadcast(otherwise, index)
        return then_s.where(mask, otherwise_s).mask(condition.isna())

    def columns(self) -> set[str]:
        return self.condition.columns() | self.then.columns() | self.otherwise.columns()


@dataclass(frozen=True)
class Call(Node):
    function: str
    args: tuple[Node, ...]

    def evaluate(self, env: Mapping[str, pd.Series]) -> Value:
        if self.function == "col":
            return ColumnRef(self.args[0].value).evaluate(env)  # type: ignore[attr-defined]
        fn, _, _ = FUNCTIONS[self.function]
        return fn(*(a.evaluate(env) for a in self.args))

    def columns(self) -> set[str]:
        if self.function == "col":
            return {self.args[0].value}  # type: ignore[attr-defined]
        return set().union(*(a.columns() for a in self.args))


@dataclass(frozen=True)
class Expression:
    """A parsed expression: `columns` it reads and `evaluate(frame)` to compute it."""

    text: str
    root: Node

    @property
    def columns(self) -> set[str]:
        return self.root.columns()

    def evaluate(self, frame: pd.DataFrame | Mapping[str, pd.Series]) -> pd.Series:
        """The expression's value for every row of `frame` (scalars are broadcast)."""
        env = dict(frame.items()) if isinstance(frame, pd.DataFrame) else dict(frame)
        index = frame.index if isinstance(frame, pd.DataFrame) else next(iter(env.values())).index
        try:
            value = self.root.evaluate(env)
        except ExpressionError as exc:
            raise ExpressionError(f"{self.text!r}: {exc}") from exc
        except (TypeError, ValueError, OverflowError) as exc:
            raise ExpressionError(f"{self.text!r}: cannot be computed: {exc}") from exc
        return _broadcast(value, index)


def parse(text: str) -> Expression:
    """Parse `text` into an allow-listed tree; ExpressionError names the offending part."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{text!r}: not a valid expression: {exc.msg}") from exc
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ExpressionError(f"{text!r}: too long ({count} nodes, at most {MAX_NODES})")
    return Expression(text, _Builder(text).build(tree.body))


class _Builder:
    def __init__(self, text: str) -> None:
        self.text = text

    def fail(self, node: ast.AST, what: str) -> ExpressionError:
        col = getattr(node, "col_offset", 0) + 1
        return ExpressionError(f"{self.text!r} at character {col}: {what}")

    def build(self, node: ast.expr) -> Node:
        if isinstance(node, ast.Constant):
            if node.value is None or isinstance(node.value, bool | int | float | str):
                return Const(node.value)
            raise self.fail(node, f"constant of type {type(node.value).__name__} is not allowed")
        if isinstance(node, ast.Name):
            return ColumnRef(node.id)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return Unary(_UNARY[type(node.op)], self.build(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return Binary(_BINARY[type(node.op)], self.build(node.left), self.build(node.right))
        if isinstance(node, ast.BoolOp):
            op = "and" if isinstance(node.op, ast.And) else "or"
            return Logical(op, tuple(self.build(v) for v in node.values))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.IfExp):
            return Conditional(
                self.build(node.test), self.build(node.body), self.build(node.orelse)
            )
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(
            node,
            f"{type(node).__name__} is not allowed; use columns, constants, arithmetic, "
            f"comparisons, and/or/not, 'a if c else b' and the functions {sorted(FUNCTIONS)}",
        )

    def compare(self, node: ast.Compare) -> Node:
        parts: list[Node] = []
        left = self.build(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                parts.append(self.membership(node, left, comparator, isinstance(op, ast.NotIn)))
                continue
            if type(op) not in _COMPARE:
                raise self.fail(node, f"comparison {type(op).__name__} is not allowed")
            right = self.build(comparator)
            parts.append(Comparison(_COMPARE[type(op)], left, right))
            left = right
        return parts[0] if len(parts) == 1 else Logical("and", tuple(parts))

    def membership(
        self, node: ast.Compare, value: Node, choices: ast.expr, negated: bool
    ) -> Membership:
        if not isinstance(choices, ast.List | ast.Tuple) or not all(
            isinstance(e, ast.Constant) and isinstance(e.value, bool | int | float | str)
            for e in choices.elts
        ):
            raise self.fail(node, "'in' takes a list of constants, e.g. x in ['a', 'b']")
        return Membership(value, tuple(e.value for e in choices.elts), negated)

    def call(self, node: ast.Call) -> Node:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise self.fail(node, f"only the functions {sorted(FUNCTIONS)} may be called")
        if node.keywords:
            raise self.fail(node, "keyword arguments are not allowed")
        name = node.func.id
        _, low, high = FUNCTIONS[name]
        if not low <= len(node.args) <= high:
            raise self.fail(node, f"{name}() takes {low} to {high} arguments")
        args = tuple(self.build(a) for a in node.args)
        if name == "col" and not (isinstance(args[0], Const) and isinstance(args[0].value, str)):
            raise self.fail(node, "col() takes a column name as a string constant")
        return Call(name, args)


def _broadcast(value: Value, index: pd.Index) -> pd.Series:
    if isinstance(value, pd.Series):
        return value
    if isinstance(value, np.ndarray):
        return pd.Series(value, index=index)
    return pd.Series([value] * len(index), index=index, dtype=object if value is None else None)


def _is_datetime(series: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(series.dtype)


def _numeric(value: Value, op: str) -> Value:
    if isinstance(value, pd.Series):
        if pd.api.types.is_bool_dtype(value.dtype) or not pd.api.types.is_numeric_dtype(
            value.dtype
        ):
            raise ExpressionError(f"operator {op!r} needs numbers, got a {value.dtype} column")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ExpressionError(f"operator {op!r} needs numbers, got {value!r}")
    return value


def _as_float(value: Value) -> Value:
    if isinstance(value, pd.Series):
        return value.astype("float64")
    return np.float64(value)


def _boolean(value: Value) -> Value:
    if isinstance(value, pd.Series):
        if not pd.api.types.is_bool_dtype(value.dtype):
            raise ExpressionError(f"and/or/not need true/false values, got a {value.dtype} column")
        return value.astype("boolean")
    if not isinstance(value, bool):
        raise ExpressionError(f"and/or/not need true/false values, got {value!r}")
    return value


def _timestamp(value: Value) -> Value:
    if isinstance(value, pd.Series):
        if _is_datetime(value):
            return value
        return pd.to_datetime(value, errors="raise")
    if isinstance(value, pd.Timestamp):
        return value
    if isinstance(value, str):
        try:
            return pd.Timestamp(value)
        except ValueError as exc:
            raise ExpressionError(f"{value!r} is not an ISO date") from exc
    raise ExpressionError(f"expected a date, got {value!r}")


def _age(birth: Value, reference: Value) -> Value:
    """Completed years between `birth` and `reference` (the usual 'age at a date')."""
    born, at = _timestamp(birth), _timestamp(reference)
    years = _part(at, "year") - _part(born, "year")
    day_at = _part(at, "month") * 100 + _part(at, "day")
    day_born = _part(born, "month") * 100 + _part(born, "day")
    before_birthday = day_at < day_born
    if isinstance(before_birthday, pd.Series):
        return years - before_birthday.astype("Int64")
    return years - int(before_birthday)


def _part(value: Value, name: str) -> Value:
    value = _timestamp(value)
    if isinstance(value, pd.Series):
        return getattr(value.dt, name).astype("Int64")
    return getattr(value, name)


def _days_between(start: Value, end: Value) -> Value:
    delta = _timestamp(end) - _timestamp(start)
    if isinstance(delta, pd.Series):
        return delta.dt.days.astype("Int64")
    return delta.days


def _round(value: Value, digits: Value = 0) -> Value:
    if not isinstance(digits, int) or isinstance(digits, bool):
        raise ExpressionError("round() takes a whole number of digits")
    return np.round(_as_float(_numeric(value, "round")), digits)


def _unary_math(fn: Callable[[Any], Any], name: str) -> Callable[[Value], Value]:
    def apply(value: Value) -> Value:
        with np.errstate(all="ignore"):
            return fn(_as_float(_numeric(value, name)))

    return apply


def _pairwise(pick_left: Callable[[Any, Any], Any]) -> Callable[[Value, Value], Value]:
    def apply(left: Value, right: Value) -> Value:
        left, right = _numeric(left, "min/max"), _numeric(right, "min/max")
        return pick_left(_as_float(left), _as_float(right))

    return apply


def _is_null(value: Value) -> Value:
    return value.isna().astype("boolean") if isinstance(value, pd.Series) else value is None


def _coalesce(first: Value, second: Value) -> Value:
    if isinstance(first, pd.Series):
        return first.where(first.notna(), second)
    return second if first is None else first


def _text_fn(name: str) -> Callable[[Value], Value]:
    def apply(value: Value) -> Value:
        if isinstance(value, pd.Series):
            return getattr(value.astype("string").str, name)()
        if isinstance(value, str):
            return getattr(value, name)()
        raise ExpressionError(f"{name}() needs text, got {value!r}")

    return apply


def _concat(*values: Value) -> Value:
    series = [v for v in values if isinstance(v, pd.Series)]
    if not series:
        return "".join(str(v) for v in values)
    index = series[0].index
    result = pd.Series([""] * len(index), index=index, dtype="string")
    for value in values:
        result = result + (_broadcast(value, index).astype("string"))
    return result


def _date(value: Value) -> Value:
    return _timestamp(value)


FUNCTIONS: dict[str, tuple[Callable[..., Value], int, int]] = {
    "age": (_age, 2, 2),
    "days_between": (_days_between, 2, 2),
    "date": (_date, 1, 1),
    "year": (lambda v: _part(v, "year"), 1, 1),
    "month": (lambda v: _part(v, "month"), 1, 1),
    "day": (lambda v: _part(v, "day"), 1, 1),
    "round": (_round, 1, 2),
    "abs": (_unary_math(np.abs, "abs"), 1, 1),
    "sqrt": (_unary_math(np.sqrt, "sqrt"), 1, 1),
    "log": (_unary_math(np.log, "log"), 1, 1),
    "exp": (_unary_math(np.exp, "exp"), 1, 1),
    "floor": (_unary_math(np.floor, "floor"), 1, 1),
    "ceil": (_unary_math(np.ceil, "ceil"), 1, 1),
    "min": (_pairwise(np.fmin), 2, 2),
    "max": (_pairwise(np.fmax), 2, 2),
    "is_null": (_is_null, 1, 1),
    "coalesce": (_coalesce, 2, 2),
    "lower": (_text_fn("lower"), 1, 1),
    "upper": (_text_fn("upper"), 1, 1),
    "concat": (_concat, 1, 10),
    "col": (lambda v: v, 1, 1),
}
"""Callable functions: name -> (implementation, fewest arguments, most arguments)."""

_UNARY = {ast.USub: "-", ast.UAdd: "+", ast.Not: "not"}
_BINARY = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
}
_COMPARE = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
