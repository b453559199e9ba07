"""Maps each caller's certificate to a principal and checks it may call the method.

Every method is denied unless its service lists the caller's role; the health service alone
answers any verified peer. Identity checks the TLS stack leaves out (CA certificates used as
leaves, missing client-auth usage, revocation, enrollment) happen here, on every call, so a
certificate revoked mid-session is refused on its next call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import grpc
from cryptography import x509

from broker.auditlog import AuditLog
from broker.store import Store
from broker.tls import RevocationList
from fedsynth.security.principals import IdentityError, Principal, Role, principal_from_certificate

HEALTH_PREFIX = "/grpc.health.v1.Health/"
SERVICE_ROLES: dict[str, frozenset[Role]] = {
    "/fedsynth.v1.SupplierService/": frozenset({Role.SUPPLIER}),
    "/fedsynth.v1.OperatorService/": frozenset({Role.OPERATOR}),
    "/fedsynth.v1.ConsumerService/": frozenset({Role.CONSUMER}),
}


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
        self, federation: str, store: Store, revocations: RevocationList, audit: AuditLog
    ) -> None:
        self.federation = federation
        self.store = store
        self.revocations = revocations
        self.audit = audit

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(HEALTH_PREFIX):
            return handler
        return _guarded(handler, functools.partial(self._authorize, method))

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
                f"certificate serial {principal.serial} is revoked",
            )
        if principal.role not in allowed_roles(method):
            self._refuse(
                context,
                method,
                principal.uri,
                grpc.StatusCode.PERMISSION_DENIED,
                f"a {principal.role} may not call {method}",
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
            self.store.touch_supplier(principal.name)

    def _refuse(
        self,
        context: grpc.ServicerContext,
        method: str,
        actor: str,
        code: grpc.StatusCode,
        detail: str,
    ) -> None:
        self.audit.append(actor, "access.refused", method, status=code.name, reason=detail)
        context.abort(code, detail)


def _guarded(
    handler: grpc.RpcMethodHandler, check: Callable[[grpc.ServicerContext], None]
) -> grpc.RpcMethodHandler:
    """The same handler, with `check(context)` run before its behaviour."""

    def wrap(behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            check(context)
            return behaviour(request, context)

        return guarded

    serialization = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **serialization)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **serialization)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **serialization)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **serialization)
