"""`fedsynth pki`: create a federation CA, issue party certificates, revoke them, renew the CRL."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from fedsynth.security.ca import CRL_DAYS, FederationCA
from fedsynth.security.certificates import load_cert, served_names
from fedsynth.security.principals import Role

DEFAULT_BROKER_DNS, DEFAULT_BROKER_IP = ("localhost",), ("127.0.0.1",)

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
    except (FileExistsError, ValueError) as exc:
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

    Refuses a party that already has an unrevoked certificate unless --replace. A broker
    replaced without --dns/--ip keeps the names of the certificate it replaces.
    """
    if (dns or ip) and role is not Role.BROKER:
        _fail("--dns and --ip apply to the broker certificate only")
    try:
        ca = FederationCA(directory)
        replaced = ca.live_serials(role, name)
        old_names = _current_names(ca, name) if role is Role.BROKER and replace else None
        names: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        if dns or ip:
            names = (tuple(dns), tuple(ip))
        elif role is Role.BROKER:
            if replace and replaced and old_names is None:
                raise FileNotFoundError(
                    f"{ca.paths_for(role, name)[0]}: the broker certificate being replaced is "
                    "missing or unreadable, so its DNS names and IPs are unknown; pass them "
                    "again with --dns/--ip"
                )
            names = old_names or (DEFAULT_BROKER_DNS, DEFAULT_BROKER_IP)
        cert_path, key_path = ca.issue(
            role,
            name,
            days=days,
            dns_names=names[0] if names else (),
            ip_addresses=names[1] if names else (),
            replace=replace,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        _fail(str(exc))
    if replaced:
        typer.echo("revoked serial(s): " + ", ".join(str(s) for s in replaced))
    if names is not None:
        typer.echo("serves      " + _describe(names))
        if old_names is not None and old_names != names:
            _echo_changes(old_names, names)
    typer.echo(f"certificate {cert_path}\nkey         {key_path} (mode 0600)")


def _current_names(ca: FederationCA, name: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """DNS names and IPs of the broker certificate a --replace rotates; None if it is unreadable."""
    try:
        return served_names(load_cert(ca.paths_for(Role.BROKER, name)[0]))
    except (FileNotFoundError, ValueError):
        return None


def _describe(names: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
    """`DNS:a, IP:b` as OpenSSL prints a SAN."""
    return ", ".join([f"DNS:{d}" for d in names[0]] + [f"IP:{a}" for a in names[1]]) or "(none)"


def _echo_changes(
    old: tuple[tuple[str, ...], tuple[str, ...]], new: tuple[tuple[str, ...], tuple[str, ...]]
) -> None:
    """Print the DNS names and IPs the replacement drops and adds: agents dialing a dropped name
    fail TLS once the broker loads the new certificate."""
    old_set = {f"DNS:{d}" for d in old[0]} | {f"IP:{a}" for a in old[1]}
    new_set = {f"DNS:{d}" for d in new[0]} | {f"IP:{a}" for a in new[1]}
    if dropped := sorted(old_set - new_set):
        typer.echo("dropped     " + ", ".join(dropped) + " (clients dialing these will fail TLS)")
    if added := sorted(new_set - old_set):
        typer.echo("added       " + ", ".join(added))


@app.command()
def revoke(
    directory: Path = typer.Option(Path("pki"), "--dir", help="Folder of the CA."),
    serial: int | None = typer.Option(None, help="Serial number to revoke."),
    role: Role | None = typer.Option(None, help="With --name: revoke every live cert of it."),
    name: str | None = typer.Option(None, help="With --role: the party name."),
) -> None:
    """Add certificates to the CA's revocation list (crl.pem); brokers reload it on change.

    --role/--name with --serial must be the serial's, as a check; nothing is revoked otherwise.
    """
    if serial is None and (role is None or name is None):
        _fail("say which certificate to revoke: give --serial, or both --role and --name")
    try:
        serials = FederationCA(directory).revoke(serial=serial, role=role, name=name)
    except (FileNotFoundError, LookupError, ValueError) as exc:
        _fail(str(exc))
    typer.echo("revoked serial(s): " + ", ".join(str(s) for s in serials))


@app.command()
def crl(
    directory: Path = typer.Option(Path("pki"), "--dir", help="Folder of the CA."),
    days: int = typer.Option(CRL_DAYS, min=1, help="Days until the CRL's next update."),
) -> None:
    """Re-sign the revocation list (crl.pem) with the same entries and a new nextUpdate."""
    try:
        ca = FederationCA(directory)
        next_update = ca.resign_crl(days)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    revoked = sum(r.revoked_at is not None for r in ca.inventory.issued)
    typer.echo(
        f"re-signed {ca.crl_path}: {revoked} revoked serial(s), next update "
        f"{next_update:%Y-%m-%d %H:%M} UTC; copy it to the broker and supplier sites"
    )
