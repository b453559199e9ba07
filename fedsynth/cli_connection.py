"""The broker connection of a client command group (`fedsynth operator`, `fedsynth-consumer`):
the group's options are held until a command first needs the broker, so `--help` of any
subcommand works without certificates or a broker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import typer

from fedsynth.wire.address import check_host_port

C = TypeVar("C")
EXIT_UNUSABLE = 2
"""A required option missing, or a certificate or key file that cannot be used."""


@dataclass
class Connection(Generic[C]):
    """The broker and identity given to the group, and the client once it is open."""

    broker: str | None
    ca: Path
    cert: Path | None
    key: Path | None
    server_name: str | None
    client: C | None = None

    def open(self, ctx: typer.Context, factory: Callable[..., C]) -> C:
        """The client, opened on first use: a usage error of the group (exit 2) names each
        missing option and its environment variable; an unusable file exits 2 naming it."""
        if self.client is None:
            unset = [name for name in ("broker", "cert", "key") if getattr(self, name) is None]
            if unset:
                flags = " and ".join(f"'--{n}' (or FEDSYNTH_{n.upper()})" for n in unset)
                (ctx.parent or ctx).fail(f"Missing option {flags}.")  # an option of the group
            try:
                check_host_port(self.broker, "--broker")
                self.client = factory(
                    self.broker,
                    ca=self.ca,
                    cert=self.cert,
                    key=self.key,
                    server_name=self.server_name,
                )
            except (FileNotFoundError, ValueError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(EXIT_UNUSABLE) from exc
        return self.client
