"""Error messages for configuration documents (schemas, specs, policies, configs) people write."""

from __future__ import annotations

from pydantic import ValidationError


def describe_problems(source: str, exc: ValidationError, document: str) -> str:
    """One message naming the file and every problem in it, each with its place.

    `document` says what the file is ("schema", "job spec", ...); the message reads
    "<source>: 2 problem(s) in the <document>:" followed by one "  - <place>: <problem>" line each.
    """
    lines = [f"{source}: {exc.error_count()} problem(s) in the {document}:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  - {where}: {err['msg']}")
    return "\n".join(lines)
