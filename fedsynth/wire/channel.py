"""Mutual-TLS client channels to the broker, with the federation's keepalive and size limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fedsynth.security.certificates import verify_chain
from fedsynth.wire.allocator import keep_large_buffers

DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000
T = TypeVar("T")
RECEIVE_WINDOW_BYTES = 8 * 1024 * 1024
"""A fixed HTTP/2 receive window for each stream, instead of gRPC's bandwidth-delay probing:
with probing, a reader slower than the broker lets the window, and the bytes buffered ahead of
it, grow as the transfer goes on (measured here: a pull's peak memory 116 MiB for a 128 MiB file,
up to 200-326 MiB for 1-2 GiB); with this window it stays at 115-139 MiB from 128 MiB to 2 GiB,
at the same speed."""


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """Options shared by clients: bounded messages, and pings that keep idle streams alive
    through proxies and load balancers that drop quiet TCP connections."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


class CredentialsError(ValueError):
    """A CA, certificate or key file that cannot make a TLS identity; names the flag and fix."""


def read_identity(ca: Path, cert: Path, key: Path) -> tuple[bytes, bytes, bytes]:
    """The three PEM files' bytes, checked here because gRPC's native code aborts the process
    on an empty key and reports a mismatched key as an unreachable broker."""

    blobs = {}
    for flag, path in (("--ca", ca), ("--cert", cert), ("--key", key)):
        if path.is_dir():
            raise CredentialsError(f"{flag} {path}: is a folder; give the PEM file inside it")
        if not path.is_file():
            raise FileNotFoundError(f"{flag} {path}: file not found")
        blobs[flag] = path.read_bytes()
    authorities = _parsed(
        x509.load_pem_x509_certificates,
        blobs["--ca"],
        f"--ca {ca}: not a PEM certificate (the federation's ca.pem)",
    )
    leaf = _parsed(
        x509.load_pem_x509_certificate,
        blobs["--cert"],
        f"--cert {cert}: not a PEM certificate (the .pem that `fedsynth pki issue` wrote)",
    )
    private = _parsed(
        lambda blob: serialization.load_pem_private_key(blob, password=None),
        blobs["--key"],
        f"--key {key}: not an unencrypted PEM private key (the .key that `fedsynth pki issue` "
        "wrote)",
    )
    if private.public_key() != leaf.public_key():
        raise CredentialsError(
            f"--key {key} does not belong to --cert {cert}; give the key issued with it"
        )
    if not any(_issued_by(leaf, authority) for authority in authorities):
        raise CredentialsError(
            f"--cert {cert} is not issued by the CA in --ca {ca}, so the broker would refuse it; "
            "use the certificate your federation's CA issued, and that CA's ca.pem"
        )
    if leaf.not_valid_after_utc < datetime.now(UTC):
        raise CredentialsError(
            f"--cert {cert} expired on {leaf.not_valid_after_utc:%Y-%m-%d}; ask the federation's "
            "operator for a new one"
        )
    return blobs["--ca"], blobs["--cert"], blobs["--key"]


def _parsed(load: Callable[[bytes], T], blob: bytes, problem: str) -> T:
    """`load(blob)`, or a CredentialsError saying `problem` when the bytes are not that PEM."""
    try:
        return load(blob)
    except (ValueError, TypeError) as exc:
        raise CredentialsError(problem) from exc


def _issued_by(leaf: x509.Certificate, authority: x509.Certificate) -> bool:
    try:
        verify_chain(leaf, authority)
    except ValueError:
        return False
    return True


def secure_channel(
    target: str,
    *,
    ca: str | Path,
    cert: str | Path,
    key: str | Path,
    server_name: str | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> grpc.Channel:
    """A channel to `target` (HOST:PORT) that verifies the broker against the federation CA and
    presents this party's certificate. `server_name` overrides the name checked in the broker
    certificate when `target` is an address it does not list."""
    ca_pem, cert_pem, key_pem = read_identity(Path(ca), Path(cert), Path(key))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )
    keep_large_buffers()
    options: list[tuple[str, int | str]] = [
        *channel_options(max_message_bytes),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", RECEIVE_WINDOW_BYTES),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, credentials, options=options)
