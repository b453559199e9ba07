"""Read-ahead threads of a transfer: items in order, errors surfaced, no thread left behind."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role
from fedsynth.wire.bulk import ChunkFrame, encode_download
from fedsynth.wire.channel import secure_channel
from fedsynth.wire.pipeline import ReadAhead
from fedsynth.wire.transfer import file_digest, stream_object
from fedsynth.wire.v1 import common_pb2

CHUNK = 64 * 1024
JOIN_TIMEOUT_S = 30


def read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "transfer-read-ahead"]


def assert_read_ahead_threads_end() -> None:
    for thread in read_ahead_threads():
        thread.join(JOIN_TIMEOUT_S)
    assert read_ahead_threads() == []


def test_read_ahead_yields_every_item_in_order_then_raises_the_sources_error() -> None:
    def source() -> Iterator[int]:
        yield from range(10)
        raise OSError("the disk went away")

    ahead = ReadAhead(source())
    got: list[int] = []
    with pytest.raises(OSError, match="the disk went away"):
        for item in ahead:
            got.append(item)
    ahead.close()
    assert got == list(range(10))
    assert_read_ahead_threads_end()


def test_closing_read_ahead_early_stops_its_thread_and_ends_the_iteration() -> None:
    ahead = ReadAhead(iter(range(1000)), depth=2)
    assert next(ahead) == 0
    ahead.close()
    assert list(ahead) == []
    assert_read_ahead_threads_end()


def test_a_download_stream_closed_early_stops_its_read_ahead(tmp_path: Path) -> None:
    source = tmp_path / "object.bin"
    source.write_bytes(os.urandom(64 * CHUNK))
    messages = stream_object(source, file_digest(source), 0, chunk_bytes=CHUNK)
    assert isinstance(next(messages), common_pb2.ObjectInfo)
    assert next(messages) == ChunkFrame(0, source.read_bytes()[:CHUNK])
    messages.close()
    assert read_ahead_threads() == []


def test_a_cancelled_download_call_stops_the_senders_read_ahead(tmp_path: Path) -> None:
    source = tmp_path / "object.bin"
    source.write_bytes(os.urandom(256 * CHUNK))
    digest = file_digest(source)
    served = threading.Event()

    def download(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for message in stream_object(source, digest, 0, chunk_bytes=CHUNK):
            served.set()
            yield encode_download(message)

    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Objects", {"Download": grpc.unary_stream_rpc_method_handler(download)}
            )
        ]
    )
    pki = FederationCA.init(tmp_path / "pki", "pipeline")
    broker_cert, broker_key = pki.issue(Role.BROKER, "broker", ip_addresses=("127.0.0.1",))
    client_cert, client_key = pki.issue(Role.CONSUMER, "alice")
    ca = pki.directory / "ca.pem"
    credentials = grpc.ssl_server_credentials(
        [(broker_key.read_bytes(), broker_cert.read_bytes())],
        root_certificates=ca.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        with secure_channel(
            f"127.0.0.1:{port}", ca=ca, cert=client_cert, key=client_key
        ) as channel:
            call = channel.unary_stream(
                "/test.Objects/Download",
                response_deserializer=common_pb2.DownloadMessage.FromString,
            )(b"", timeout=JOIN_TIMEOUT_S)
            assert next(call).HasField("info")
            assert next(call).chunk.offset == 0
            assert served.is_set()
            call.cancel()
        assert_read_ahead_threads_end()
    finally:
        server.stop(None).wait()
