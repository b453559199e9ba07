"""Assemble and run the broker's gRPC server: mutual TLS, authorization, services, health."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

from broker.config import BrokerConfig
from broker.consumer_service import ConsumerService
from broker.health import HealthServicer
from broker.interceptor import AuthInterceptor
from broker.operator_service import OperatorService
from broker.orchestrator import Orchestrator
from broker.retention import Janitor
from broker.state import BrokerState
from broker.supplier_service import SupplierService
from broker.tls import RevocationList, RotatingCredentials
from fedsynth.state_lock import StateLock
from fedsynth.wire import bulk
from fedsynth.wire.allocator import keep_large_buffers
from fedsynth.wire.v1 import (
    consumer_pb2_grpc,
    health_pb2_grpc,
    operator_pb2_grpc,
    supplier_pb2_grpc,
)

log = logging.getLogger(__name__)
GRACE_S = 5.0


def server_options(config: BrokerConfig) -> list[tuple[str, int]]:
    """Bounded messages; keepalive pings so idle agent streams survive middleboxes, and
    permission for agents to ping us as often as every keepalive interval. No port sharing: gRPC
    would otherwise let a second broker bind the same port and take half the connections."""
    limits = config.limits
    return [
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.keepalive_time_ms", limits.keepalive_time_s * 1000),
        ("grpc.keepalive_timeout_ms", limits.keepalive_timeout_s * 1000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.so_reuseport", 0),
    ]


@dataclass
class RunningBroker:
    """A started broker; `stop` drains calls and closes the state."""

    state: BrokerState
    server: grpc.Server
    health_server: grpc.Server | None
    health: HealthServicer
    port: int
    orchestrator: Orchestrator
    janitor: Janitor | None
    lock: StateLock

    def stop(self, grace: float = GRACE_S) -> None:
        self.health.set_serving(False)
        if self.janitor is not None:
            self.janitor.stop()
        self.orchestrator.stop()
        events = [self.server.stop(grace)]
        if self.health_server is not None:
            events.append(self.health_server.stop(grace))
        for event in events:
            event.wait()
        self.state.close()
        self.lock.release()


def _bind(server: grpc.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    try:
        port = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address}: address in use or not available")
    return port


class _Handlers:
    """Stands in for a server to catch the method handlers a generated `add_*_to_server`
    registers."""

    def __init__(self) -> None:
        self.service = ""
        self.methods: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """The same handlers come again by name, below."""

    def add_registered_method_handlers(
        self, service: str, methods: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.service, self.methods = service, methods


Codec = Callable[[grpc.RpcMethodHandler], grpc.RpcMethodHandler]


def _add_service(
    server: grpc.Server,
    add_to_server: Callable[[Any, Any], None],
    servicer: object,
    codecs: dict[str, Codec],
) -> None:
    """Register a generated service with the (de)serializers of its bulk methods replaced."""
    caught = _Handlers()
    add_to_server(servicer, caught)
    methods = {
        name: codecs[name](handler) if name in codecs else handler
        for name, handler in caught.methods.items()
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(caught.service, methods),)
    )
    server.add_registered_method_handlers(caught.service, methods)


def _download_codec(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """Chunks streamed out with one copy (`bulk.encode_download`)."""
    return grpc.unary_stream_rpc_method_handler(
        handler.unary_stream,
        request_deserializer=handler.request_deserializer,
        response_serializer=bulk.encode_download,
    )


def _upload_codec(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """Chunks read in as views of the received messages (`bulk.decode_upload`)."""
    return grpc.stream_unary_rpc_method_handler(
        handler.stream_unary,
        request_deserializer=bulk.decode_upload,
        response_serializer=handler.response_serializer,
    )


def start(config: BrokerConfig) -> RunningBroker:
    """Open the state and start serving on `config.listen` (and `config.health_listen`)."""
    credentials = RotatingCredentials(
        config.tls.ca,
        config.tls.cert,
        config.tls.key,
        federation=config.federation,
        name=config.name,
    )
    keep_large_buffers()
    lock = StateLock.acquire(config.state_dir, "broker")
    try:
        return _start(config, lock, credentials)
    except BaseException:
        lock.release()
        raise


def _start(
    config: BrokerConfig, lock: StateLock, credentials: RotatingCredentials
) -> RunningBroker:
    state = BrokerState.open(config)
    revocations = RevocationList(config.tls.crl, config.tls.ca)
    interceptor = AuthInterceptor(
        config.federation,
        state.store,
        revocations,
        state.audit,
        max_streams=config.limits.streams_per_principal,
        faults=state.storage_faults,
    )
    health = HealthServicer()
    options = server_options(config)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.limits.max_workers),
        interceptors=[interceptor],
        options=options,
        maximum_concurrent_rpcs=config.limits.max_workers * 4,
    )
    _add_service(
        server,
        supplier_pb2_grpc.add_SupplierServiceServicer_to_server,
        SupplierService(state, revocations),
        {"Upload": _upload_codec, "FetchArtifact": _download_codec},
    )
    operator_pb2_grpc.add_OperatorServiceServicer_to_server(OperatorService(state), server)
    _add_service(
        server,
        consumer_pb2_grpc.add_ConsumerServiceServicer_to_server,
        ConsumerService(state),
        {"Download": _download_codec},
    )
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = _bind(server, config.listen, credentials.credentials)
    health_server = None
    if config.health_listen:
        health_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
        health_pb2_grpc.add_HealthServicer_to_server(health, health_server)
        _bind(health_server, config.health_listen, None)
        health_server.start()
    server.start()
    orchestrator = Orchestrator(state, on_health=health.set_serving)
    orchestrator.start()
    janitor = None
    if config.retention.keep_finished_days is not None:
        janitor = Janitor(
            state, config.retention.keep_finished_days, config.retention.sweep_every_s
        )
        janitor.start()
    state.audit.append(config.uri, "broker.started", config.listen)
    log.info("broker %s serving on %s", config.name, config.listen)
    return RunningBroker(state, server, health_server, health, port, orchestrator, janitor, lock)


def serve(config: BrokerConfig, stop: threading.Event) -> None:
    """Run until `stop` is set, then shut down gracefully."""
    broker = start(config)
    try:
        stop.wait()
    finally:
        broker.stop()
