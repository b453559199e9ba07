"""The standard gRPC health service (grpc.health.v1), reporting only serving status."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from fedsynth.wire.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
KNOWN_SERVICES = frozenset(
    {
        "",
        "fedsynth.v1.SupplierService",
        "fedsynth.v1.OperatorService",
        "fedsynth.v1.ConsumerService",
    }
)


class HealthServicer(health_pb2_grpc.HealthServicer):
    """SERVING while the broker runs, NOT_SERVING once it starts shutting down."""

    def __init__(self) -> None:
        self._status = SERVING
        self._changed = threading.Condition()

    def set_serving(self, serving: bool) -> None:
        with self._changed:
            self._status = SERVING if serving else NOT_SERVING
            self._changed.notify_all()

    def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in KNOWN_SERVICES:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self._status)

    def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> Iterator[health_pb2.HealthCheckResponse]:
        if request.service not in KNOWN_SERVICES:
            yield health_pb2.HealthCheckResponse(
                status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            )
            return
        last = None
        while context.is_active():
            with self._changed:
                if last == self._status:
                    self._changed.wait(timeout=5.0)
                current = self._status
            if current != last:
                last = current
                yield health_pb2.HealthCheckResponse(status=current)
