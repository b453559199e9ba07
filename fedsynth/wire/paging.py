"""Client side of the contract's paged listings: follow next_page_token to the last page."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

Item = TypeVar("Item")


class PagedReply(Protocol):
    next_page_token: str


Reply = TypeVar("Reply", bound=PagedReply)


def every_page(
    fetch: Callable[[str], Reply], items: Callable[[Reply], Iterable[Item]]
) -> list[Item]:
    """Every item of a listing: `fetch(page_token)` from the first page ("") until a reply's
    `next_page_token` is empty; a token handed out twice is an error, not a loop."""
    found: list[Item] = []
    token, seen = "", set()
    while True:
        reply = fetch(token)
        found.extend(items(reply))
        token = reply.next_page_token
        if not token:
            return found
        if token in seen:
            raise RuntimeError(f"the broker handed out page token {token!r} twice")
        seen.add(token)
