"""Glue between service methods and gRPC statuses: a Refusal becomes an aborted call, and a
state the broker cannot write (a full disk) UNAVAILABLE, noted for the health status."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from broker.errors import Refusal
from broker.storage_faults import is_storage_fault

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
        except Exception as exc:
            _abort_on_storage_fault(self, context, method.__name__, exc)
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
        except Exception as exc:
            _abort_on_storage_fault(self, context, method.__name__, exc)
            raise

    return wrapper


def _abort_on_storage_fault(
    service: Any, context: grpc.ServicerContext, method: str, exc: Exception
) -> None:
    """UNAVAILABLE for a write the state refused; any other error is left to propagate."""
    if not is_storage_fault(exc):
        return
    service.state.storage_faults.note(exc, method)
    context.abort(
        grpc.StatusCode.UNAVAILABLE,
        "the broker cannot write its state just now (its disk may be full); retry later",
    )
