"""The console commands, entered here so that gRPC's own INFO lines (a failed TLS handshake,
each retry) stay off their output: gRPC reads GRPC_VERBOSITY once, when it is first imported,
so it is set before any command module loads. A user's own GRPC_VERBOSITY is kept."""

from __future__ import annotations

import importlib
import os

MODULES = {
    "fedsynth": "fedsynth.cli",
    "broker": "broker.cli",
    "supplier": "supplier_agent.cli",
    "consumer": "consumer_client.cli",
}
"""The module whose `main` (and typer `app`) each entry function runs."""


def _run(command: str) -> None:
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    importlib.import_module(MODULES[command]).main()


def fedsynth() -> None:
    """`fedsynth`: the library commands, PKI and the operator client."""
    _run("fedsynth")


def broker() -> None:
    """`fedsynth-broker`."""
    _run("broker")


def supplier() -> None:
    """`fedsynth-supplier`: the supplier agent."""
    _run("supplier")


def consumer() -> None:
    """`fedsynth-consumer`."""
    _run("consumer")
