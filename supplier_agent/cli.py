"""The `fedsynth-supplier` command, run by a data supplier's IT staff."""

from __future__ import annotations

from importlib.metadata import version

import typer

app = typer.Typer(
    name="fedsynth-supplier",
    help="The supplier agent of a fedsynth federation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command("version")
def show_version() -> None:
    """Print the installed fedsynth version."""
    typer.echo(version("fedsynth"))


def main() -> None:
    """Console-script entry point."""
    app()
