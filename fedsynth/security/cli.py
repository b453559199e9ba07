"""`fedsynth pki`: create a federation CA, issue party certificates, revoke them."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import IdentityError, Role

app = typer.Typer(help="Federation PKI: CA, party certificates (SPIFFE URI SANs), revocation.")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def init(
    federation: str = typer.Option(..., help="Federation name, e.g. 'health-eu'."),
    directory: Path = typer.Option(Path("pki"), "--dir", help="Folder for the CA files."),
    days: int = typer.Option(3650, min=1, help="CA validity in days."),
) -> None:
    """Create a federation CA (ca.pem, ca.key, crl.pem) in --dir."""
    try:
        ca = FederationCA.init(directory, federation, days=days)
    except (FileExistsError, IdentityError) as exc:
        _fail(str(exc))
    typer.echo(f"created CA for federation {ca.federation!r} in {directory}")


@app.command()
def issue(
    role: Role = typer.Option(..., help="Party role."),
    name: str = typer.Option(..., help="Party name, e.g. 'hospital-a'."),
    directory: Path = typer.Option(Path("pki"), "--dir", help="Folder of the CA."),
    days: int = typer.Option(365, min=1, help="Certificate validity in days."),
    dns: list[str] = typer.Option([], help="Broker only: DNS name to serve (repeatable)."),
    ip: list[str] = typer.Option([], help="Broker only: IP address to serve (repeatable)."),
    replace: bool = typer.Option(
        False, "--replace", help="Revoke the party's current certificate and issue a new one."
    ),
) -> None:
    """Issue an ECDSA P-256 key and certificate for spiffe://<federation>/<role>/<name>.

    Refuses a party that already has an unrevoked certificate unless --replace.
    """
    if (dns or ip) and role is not Role.BROKER:
        _fail("--dns and --ip apply to the broker certificate only")
    if role is Role.BROKER and not (dns or ip):
        dns, ip = ["localhost"], ["127.0.0.1"]
    try:
        ca = FederationCA(directory)
        replaced = ca.live_serials(role, name)
        cert_path, key_path = ca.issue(
            role, name, days=days, dns_names=tuple(dns), ip_addresses=tuple(ip), replace=replace
        )
    except (FileNotFoundError, FileExistsError, IdentityError, ValueError) as exc:
        _fail(str(exc))
    if replaced:
        typer.echo("revoked serial(s): " + ", ".join(str(s) for s in replaced))
    typer.echo(f"certificate {cert_path}\nkey         {key_path} (mode 0600)")


@app.command()
def revoke(
    directory: Path = typer.Option(Path("pki"), "--dir", help="Folder of the CA."),
    serial: int | None = typer.Option(None, help="Serial number to revoke."),
    role: Role | None = typer.Option(None, help="With --name: revoke every live cert of it."),
    name: str | None = typer.Option(None, help="With --role: the party name."),
) -> None:
    """Add certificates to the CA's revocation list (crl.pem); brokers reload it on change."""
    try:
        serials = FederationCA(directory).revoke(serial=serial, role=role, name=name)
    except (FileNotFoundError, LookupError, ValueError) as exc:
        _fail(str(exc))
    typer.echo("revoked serial(s): " + ", ".join(str(s) for s in serials))
