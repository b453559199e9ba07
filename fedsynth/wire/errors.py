"""What a failed call to the broker means, in words a person running a command can act on.

gRPC reports an address nobody listens on, or a port that does not speak TLS, as UNAVAILABLE
with transport details; the commands say which it is and what to check instead.
"""

from __future__ import annotations

import re

import grpc

_ADDRESS = re.compile(r"ipv[46]:((?:\[[^\]]+\]|[^\s:\[\]]+):\d+)")


def describe_rpc_error(exc: grpc.RpcError) -> str:
    """One line for a failed call: the broker's own answer, or why it could not be reached."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    where = _address(details)
    if code is grpc.StatusCode.UNAVAILABLE and "Connection refused" in details:
        return (
            f"cannot reach the broker{where} (connection refused): check that it is running "
            "and that this is its mTLS address (its config's listen:)"
        )
    if code is grpc.StatusCode.UNAVAILABLE and (
        "WRONG_VERSION_NUMBER" in details or "handshake failed" in details.lower()
    ):
        return (
            f"the broker{where} did not complete a TLS handshake: this port may not speak TLS "
            "(the plaintext health port?) or the broker refused this certificate; use its "
            "listen: address and a certificate of this federation"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the broker{where} did not answer in time: {details}"
    return f"broker answered {code.name}: {details}"


def _address(details: str) -> str:
    match = _ADDRESS.search(details)
    return f" at {match.group(1)}" if match else ""
