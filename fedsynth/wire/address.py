"""HOST:PORT addresses in configs, checked before anything binds or dials them."""

from __future__ import annotations

MAX_PORT = 65_535


def check_host_port(value: str, field: str, *, listening: bool = False) -> str:
    """`value` if it is HOST:PORT with a port in 1-65535 (0, "any free port", when `listening`);
    a ValueError naming `field` and an example otherwise."""
    host, _, port = value.rpartition(":")
    lowest = 0 if listening else 1
    if not host or not port.isdigit() or not lowest <= int(port) <= MAX_PORT:
        raise ValueError(
            f"{field} {value!r} must be host:port with a port from {lowest} to {MAX_PORT}, "
            "e.g. broker.example:7443"
        )
    return value
