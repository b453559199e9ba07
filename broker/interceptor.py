"""Maps each caller's certificate to a principal and checks it may call the method.

Every method is denied unless its service lists the caller's role; the health service alone
answers any verified peer. Identity checks the TLS stack leaves out (CA certificates used as
leaves, missing client-auth usage, revocation, enrollment) happen here, on every call, so a
certificate revoked mid-session is refused on its next call.

Calls that hold a server thread for long (streams, and BeginUpload, which may wait for a stream
of its upload) are counted per certificate and refused past a cap, so no one peer can take the
thread pool from the others.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from cryptography import x509

from broker.auditlog import AuditLog
from broker.storage_faults import StorageFaults, is_storage_fault
from broker.store import Store
from broker.tls import RevocationList
from fedsynth.security.principals import IdentityError, Principal, Role, principal_from_certificate

HEALTH_PREFIX = "/grpc.health.v1.Health/"
LONG_CALLS = frozenset(
    {
        "/fedsynth.v1.SupplierService/Upload",
        "/fedsynth.v1.SupplierService/BeginUpload",
        "/fedsynth.v1.SupplierService/FetchArtifact",
        "/fedsynth.v1.ConsumerService/Download",
    }
)
"""Methods counted against `max_streams` per certificate. Subscribe is not: a supplier has one
task stream at a time (SupplierService)."""
SERVICE_ROLES: dict[str, frozenset[Role]] = {
    "/fedsynth.v1.SupplierService/": frozenset({Role.SUPPLIER}),
    "/fedsynth.v1.OperatorService/": frozenset({Role.OPERATOR}),
    "/fedsynth.v1.ConsumerService/": frozenset({Role.CONSUMER}),
}

log = logging.getLogger(__name__)


def allowed_roles(method: str) -> frozenset[Role]:
    """Roles allowed to call `method` (a full '/package.Service/Method' name); empty = none."""
    for prefix, roles in SERVICE_ROLES.items():
        if method.startswith(prefix):
            return roles
    return frozenset()


@functools.lru_cache(maxsize=1024)
def _load_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def peer_certificate(context: grpc.ServicerContext) -> x509.Certificate | None:
    pems = context.auth_context().get("x509_pem_cert")
    return _load_cert(pems[0]) if pems else None


def principal_of(context: grpc.ServicerContext, federation: str) -> Principal:
    """The principal behind this call's verified client certificate (raises IdentityError)."""
    cert = peer_certificate(context)
    if cert is None:
        raise IdentityError("no client certificate")
    return principal_from_certificate(cert, federation)


class AuthInterceptor(grpc.ServerInterceptor):
    """Authorizes every call before its handler runs; refusals are written to the audit log."""

    def __init__(
        self,
        federation: str,
        store: Store,
        revocations: RevocationList,
        audit: AuditLog,
        max_streams: int,
        faults: StorageFaults,
    ) -> None:
        self.faults = faults
        self.federation = federation
        self.store = store
        self.revocations = revocations
        self.audit = audit
        self.max_streams = max_streams
        self._open: Counter[str] = Counter()
        self._open_lock = threading.Lock()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(HEALTH_PREFIX):
            return handler
        slot = functools.partial(self._slot, method) if method in LONG_CALLS else None
        return _guarded(handler, functools.partial(self._authorize, method), slot)

    def _slot(self, method: str, context: grpc.ServicerContext) -> Callable[[], None]:
        """Count a long call of the caller's certificate, refused past `max_streams`; returns
        the function that releases it when the call ends."""
        uri = principal_of(context, self.federation).uri
        with self._open_lock:
            held = self._open[uri]
            if held < self.max_streams:
                self._open[uri] = held + 1
        if held >= self.max_streams:
            self._refuse(
                context,
                method,
                uri,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{uri} has {held} uploads/downloads open, the broker limit "
                "(limits.max_streams_per_principal): let one finish first",
            )

        def release() -> None:
            with self._open_lock:
                self._open[uri] -= 1
                if not self._open[uri]:
                    del self._open[uri]

        return release

    def _authorize(self, method: str, context: grpc.ServicerContext) -> None:
        try:
            principal = principal_of(context, self.federation)
        except IdentityError as exc:
            self._refuse(context, method, "unknown", grpc.StatusCode.UNAUTHENTICATED, str(exc))
            return
        if self.revocations.is_revoked(principal.serial):
            self._refuse(
                context,
                method,
                principal.uri,
                grpc.StatusCode.UNAUTHENTICATED,
                f"certificate serial {principal.serial} is revoked: ask the federation's "
                "operator for a new one",
            )
        if principal.role not in allowed_roles(method):
            self._refuse(
                context,
                method,
                principal.uri,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{_article(principal.role)} {principal.role} may not call {method}",
            )
        if principal.role is Role.SUPPLIER:
            if not self.store.is_enrolled(principal.name):
                self._refuse(
                    context,
                    method,
                    principal.uri,
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"supplier {principal.name!r} is not enrolled at this broker",
                )
            try:
                self.store.touch_supplier(principal.name)
            except sqlite3.OperationalError as exc:  # last contact is a note: the call goes on
                self.faults.note(exc, "recording a supplier's contact")

    def _refuse(
        self,
        context: grpc.ServicerContext,
        method: str,
        actor: str,
        code: grpc.StatusCode,
        detail: str,
    ) -> None:
        try:
            self.audit.append(actor, "access.refused", method, status=code.name, reason=detail)
        except Exception as exc:
            if not is_storage_fault(exc):
                raise
            self.faults.note(exc, "logging a refusal")
        log.warning("refused %s to %s: %s %s", method, actor, code.name, detail)
        context.abort(code, detail)


Slot = Callable[[grpc.ServicerContext], Callable[[], None]]


def _guarded(
    handler: grpc.RpcMethodHandler,
    check: Callable[[grpc.ServicerContext], None],
    slot: Slot | None = None,
) -> grpc.RpcMethodHandler:
    """The same handler, with `check(context)` run before its behaviour; with a `slot`, the
    call holds one (taken after the check) until its behaviour, streamed replies included, ends."""

    def wrap(behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            check(context)
            if slot is None:
                return behaviour(request, context)
            release = slot(context)
            try:
                return behaviour(request, context)
            finally:
                release()

        return guarded

    def wrap_stream(behaviour: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            check(context)
            if slot is None:
                yield from behaviour(request, context)
                return
            release = slot(context)
            try:
                yield from behaviour(request, context)
            finally:
                release()

        return guarded

    serialization = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **serialization)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrap_stream(handler.unary_stream), **serialization
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **serialization)
    return grpc.stream_stream_rpc_method_handler(
        wrap_stream(handler.stream_stream), **serialization
    )


def _article(role: Role) -> str:
    return "an" if str(role)[0] in "aeiou" else "a"
