"""Page size and cursor of a listing call: every list a peer can ask for grows with the
broker's life (jobs, candidates, releases), so each reply carries a bounded page of it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from broker.errors import Refusal

DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
MAX_CURSOR = 2**63 - 1
"""The largest SQLite rowid: a token past it is none this broker handed out."""


@dataclass(frozen=True)
class PageRequest:
    """Where a page starts (the store row to list after) and how many rows it holds."""

    after: int
    limit: int


def page_request(page_size: int, page_token: str) -> PageRequest:
    """The page a request asks for; INVALID_ARGUMENT for a negative size or a token this
    broker did not hand out. A size above MAX_PAGE_SIZE is cut to it."""
    if page_size < 0:
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"page_size {page_size} is negative")
    after = 0
    if page_token:
        if not (page_token.isascii() and page_token.isdigit() and int(page_token) <= MAX_CURSOR):
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"page_token {page_token[:40]!r} is not one this broker handed out; pass the "
                "next_page_token of the previous reply, or none for the first page",
            )
        after = int(page_token)
    return PageRequest(after, min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE))


def page_token(next_after: int | None) -> str:
    """The token a reply carries for the next page; empty on the last one."""
    return "" if next_after is None else str(next_after)
