"""Error messages for configuration documents (schemas, specs, policies, configs) people write."""

from __future__ import annotations

import difflib
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError


def describe_problems(
    source: str,
    exc: ValidationError,
    document: str,
    model: type[BaseModel] | None = None,
    data: Any = None,
) -> str:
    """One message naming the file and every problem in it, each with its place.

    `document` says what the file is ("schema", "job spec", ...); the message reads
    "<source>: 2 problem(s) in the <document>:" followed by one "  - <place>: <problem>" line each.
    With the `model` validated and the `data` given to it, places read as the document does
    (`columns[4] (height_cm).kind`, without pydantic's union tags), an unknown key comes with the
    known ones at its place and the closest of them, and an unknown kind with the valid kinds.
    """
    lines = [f"{source}: {exc.error_count()} problem(s) in the {document}:"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = _place(loc, data)
        if err["type"] == "union_tag_invalid":
            key = str((err.get("ctx") or {}).get("discriminator", "kind")).strip("'")
            where = f"{where}.{key}" if where else key
        lines.append(f"  - {where or '(top level)'}: {_problem(err, loc, model)}")
    return "\n".join(lines)


def _problem(err: Any, loc: tuple[Any, ...], model: type[BaseModel] | None) -> str:
    if err["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
        known = _fields_at(model, loc[:-1]) if model is not None else []
        if not known:
            return f"unknown key {loc[-1]!r}"
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {loc[-1]!r}{hint} (known: {', '.join(known)})"
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"{ctx.get('tag')!r} is not one of {expected}"
    return str(err["msg"])


def _place(loc: tuple[Any, ...], data: Any) -> str:
    """`loc` as the document reads: `[i]` for items (with the item's name when it has one), and
    no union tag that pydantic adds (a value of the mapping it stands in, not one of its keys)."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            parts.append(f"[{part}]" + (f" ({name})" if isinstance(name, str) else ""))
            node = item
            continue
        if isinstance(node, dict) and part not in node and part in map(str, node.values()):
            continue
        parts.append(f".{part}" if parts else str(part))
        node = node.get(part) if isinstance(node, dict) else None
    return "".join(parts)


def _fields_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The keys a mapping at `path` of a `model` document may have, sorted."""
    candidates = [model]
    for part in path:
        if isinstance(part, int):
            continue
        inner = [found for m in candidates for found in _models_in(_field_annotation(m, part))]
        if inner:
            candidates = inner
            continue
        tagged = [m for m in candidates if part in _tags(m)]
        candidates = tagged or candidates
    names = {f.alias or name for m in candidates for name, f in m.model_fields.items()}
    return sorted(names)


def _field_annotation(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field.annotation
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every pydantic model an annotation holds (inside unions, lists, dicts, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (None, Literal):
        return []
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _tags(model: type[BaseModel]) -> set[str]:
    """Literal values of a model's fields: the tags that pick it out of a union."""
    tags: set[str] = set()
    for field in model.model_fields.values():
        if typing.get_origin(field.annotation) is Literal:
            tags.update(str(v) for v in typing.get_args(field.annotation))
    return tags
