"""Glue between service methods and gRPC statuses: a Refusal becomes an aborted call."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from broker.errors import Refusal

T = TypeVar("T")


def refusals_abort(method: Callable[..., T]) -> Callable[..., T]:
    """Turn a Refusal raised by a unary-response method into an aborted call with its status."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> T:
        try:
            return method(self, request, context)
        except Refusal as exc:
            context.abort(exc.code, exc.detail)
            raise

    return wrapper


def stream_refusals_abort(
    method: Callable[..., Iterator[T]],
) -> Callable[..., Iterator[T]]:
    """The same for methods that stream their responses."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[T]:
        try:
            yield from method(self, request, context)
        except Refusal as exc:
            context.abort(exc.code, exc.detail)

    return wrapper
