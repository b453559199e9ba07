"""The agent's own configuration, written by the supplier's IT staff as YAML.

It names the data sources, the broker and the TLS material, and — enforced here at the site,
never by the broker — the egress policy: what may leave, for which topologies, and the audit
bar the site's own synthetic output must clear; and the privacy caps: the most (epsilon, delta)
that DP releases may spend on each source over all jobs (no cap: no DP task is accepted).
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from fedsynth.audit.policy import AuditPolicy
from fedsynth.documents import describe_problems
from fedsynth.jobs import Topology
from fedsynth.prep.tokens import LinkageSecret, SecretError
from fedsynth.privacy.spec import BudgetCap
from fedsynth.security.certificates import load_cert
from fedsynth.security.principals import (
    IdentityError,
    Role,
    federation_of_ca,
    principal_from_certificate,
)
from fedsynth.wire.address import check_host_port
from fedsynth.wire.channel import CredentialsError, read_identity


class ArtifactKind(StrEnum):
    """What can leave a supplier site, from most to least revealing."""

    RAW = "raw"
    PREPARED = "prepared"
    SYNTHETIC = "synthetic"
    STATISTICS = "statistics"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FILE_DATABASES = frozenset({"sqlite", "duckdb"})
"""SQLAlchemy backends whose URL names a local file (`dialect:///relative` or `:////absolute`)."""


class _SourceBase(_Strict):
    """What every kind of source has: the name the agent config gives it (set on loading), and
    the columns the site never lets out."""

    withheld: list[str] = Field(
        default_factory=list,
        description="Source columns that never leave this site except as linkage tokens (names, "
        "record numbers): raw uploads leave them out, and a job whose preparation would put one "
        "(under any name) into its rows or a derivation is refused. The job's schema is the "
        "broker's word; this list is the site's.",
    )
    _name: str | None = PrivateAttr(None)

    def field(self, key: str) -> str:
        """Where a person sets `key` of this source: `sources.NAME.KEY` in the agent config."""
        return f"sources.{self._name or '<name>'}.{key}"


class FileSource(_SourceBase):
    """A CSV or Parquet file on the agent's machine."""

    kind: Literal["file"] = "file"
    path: Path
    delimiter: str | None = Field(None, description="CSV delimiter; sniffed when omitted.")
    encoding: str = "utf-8"
    privacy_cap: BudgetCap | None = Field(
        None, description="This source's own privacy cap; default: the agent's privacy_cap."
    )

    def location(self) -> str:
        """Where the rows live, for the privacy ledger: the file's resolved path."""
        return f"file:{self.path.resolve()}"

    def relative_to(self, base: Path) -> FileSource:
        """A copy whose relative path is taken from `base` (the config file's folder)."""
        if self.path.is_absolute():
            return self
        return self.model_copy(update={"path": (base / self.path).resolve()})


class SqlSource(_SourceBase):
    """A query against a SQL database (SQLite, PostgreSQL, or any SQLAlchemy URL)."""

    kind: Literal["sql"] = "sql"
    url: str = Field(
        description="SQLAlchemy URL without the password, e.g. postgresql+psycopg://"
        "reader@db.local/clinic or sqlite:////data/clinic.db"
    )
    query: str = Field(min_length=1, description="SELECT statement returning the source rows.")
    password_env: str | None = Field(
        None, description="Environment variable holding the password (kept out of the file)."
    )
    privacy_cap: BudgetCap | None = Field(
        None, description="This source's own privacy cap; default: the agent's privacy_cap."
    )

    @field_validator("url")
    @classmethod
    def _parsable(cls, value: str) -> str:
        """Checked at load, so a mistyped URL stops the agent at start-up, naming the field."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except ArgumentError:
            raise ValueError(
                "not a SQLAlchemy URL; write dialect[+driver]://user@host/database, e.g. "
                "postgresql+psycopg://reader@db.local/clinic or sqlite:///data/clinic.db"
            ) from None
        return value

    def location(self) -> str:
        """Where the rows live, for the privacy ledger: the database and the query. Loaded
        from a config, a database file is named by its resolved path."""
        from sqlalchemy.engine import make_url

        database = make_url(self.url).render_as_string(hide_password=True)
        return f"sql:{database} {' '.join(self.query.split())}"

    def database_file(self) -> Path | None:
        """The file of a file database (SQLite, DuckDB); None for a server or in memory."""
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        if url.get_backend_name() not in FILE_DATABASES or url.database in (None, "", ":memory:"):
            return None
        return Path(url.database.removeprefix("file:"))

    def relative_to(self, base: Path) -> SqlSource:
        """A copy whose relative database file is taken from `base` (the config file's folder),
        as file paths are, not from the directory the agent happens to start in."""
        from sqlalchemy.engine import make_url

        database = self.database_file()
        if database is None or database.is_absolute():
            return self
        url = make_url(self.url)
        uri = "file:" if url.database.startswith("file:") else ""
        resolved = url.set(database=f"{uri}{(base / database).resolve()}")
        return self.model_copy(update={"url": resolved.render_as_string(hide_password=False)})

    def resolved_url(self) -> str:
        """The URL with the password from `password_env` filled in."""
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        if self.password_env is None:
            return url.render_as_string(hide_password=False)
        password = os.environ.get(self.password_env)
        if password is None:
            raise AgentConfigError(
                f"source URL {url.render_as_string()}: environment variable "
                f"{self.password_env} is not set; export it before starting the agent"
            )
        return url.set(password=password).render_as_string(hide_password=False)


Source = Annotated[FileSource | SqlSource, Field(discriminator="kind")]


class EgressPolicy(_Strict):
    """What this site lets leave it; the agent refuses any task outside it."""

    allow: frozenset[ArtifactKind] = Field(
        frozenset({ArtifactKind.SYNTHETIC, ArtifactKind.STATISTICS}),
        description="Artifact kinds that may be sent to the broker.",
    )
    topologies: frozenset[Topology] = Field(
        frozenset({Topology.LOCAL, Topology.FEDERATED}),
        description="Topologies this site takes part in.",
    )
    min_audit: dict[str, Any] = Field(
        default_factory=dict,
        description="This site's audit bar, whatever the job asks: the audit policy's default "
        "thresholds with these fields in their place (the only way to loosen one); a job's "
        "policy may tighten the bar, never loosen it.",
    )
    min_parties: int = Field(
        3,
        ge=2,
        description="Sites a job must count (its quorum, else its suppliers) before this site "
        "sends exact (non-DP) statistics: the broker merges them and sends the sums back, so in "
        "a job of two each site could subtract its own and read the other's.",
    )
    max_audits_per_job: int = Field(
        2,
        ge=1,
        description="Candidates of one job this site audits against its rows; each verdict "
        "tells the broker something about the rows, so more are refused.",
    )
    max_audits_per_day: int = Field(
        48, ge=1, description="Candidates this site audits in any 24 hours, over all jobs."
    )

    @field_validator("min_audit")
    @classmethod
    def _known_thresholds(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Checked at load, so a typo stops the agent at start-up instead of at its first task."""
        unknown = sorted(set(value) - set(AuditPolicy.model_fields))
        if unknown:
            raise ValueError(
                f"unknown threshold(s) {unknown}; known: {', '.join(AuditPolicy.model_fields)}"
            )
        try:
            AuditPolicy.model_validate(AuditPolicy().model_dump() | value)
        except ValidationError as exc:
            problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
            raise ValueError(problems) from None
        return value


class TlsFiles(_Strict):
    """The federation CA certificate, this agent's own certificate and key, and optionally the
    federation's revocation list."""

    ca: Path
    cert: Path
    key: Path
    crl: Path | None = Field(
        None,
        description="The federation's revocation list (crl.pem, refreshed by the operator); "
        "a peer's key relayed under a revoked certificate is refused.",
    )


class Reconnect(_Strict):
    """Exponential backoff with full jitter between connection attempts."""

    initial_s: float = Field(0.5, gt=0)
    max_s: float = Field(60.0, gt=0)


class AgentConfig(_Strict):
    """Everything a supplier agent needs to run; refer to sources by their names."""

    name: str = Field(min_length=1, description="Supplier name, as in the certificate.")
    broker: str = Field(description="Broker address host:port (the agent dials out).")
    tls: TlsFiles
    state_dir: Path = Field(description="Where the agent keeps its journal, ledger and logs.")
    sources: dict[str, Source] = Field(min_length=1)
    egress: EgressPolicy = Field(default_factory=EgressPolicy)
    reconnect: Reconnect = Field(default_factory=Reconnect)
    chunk_bytes: int = Field(
        1024 * 1024, ge=1024, description="Upload chunk size; keep it under the broker's limit."
    )
    max_input_bytes: int = Field(
        2 * 1024**3,
        ge=1024,
        description="The most bytes a task's input (a candidate, merged statistics) may take on "
        "disk or decoded; a larger one is refused before it fills the disk or the memory.",
    )
    linkage_secret: Path | None = Field(
        None,
        description="File (mode 0600) with the linkage secret shared by the suppliers; it "
        "never leaves the site and the broker never holds it.",
    )
    privacy_cap: BudgetCap | None = Field(
        None,
        description="The most (epsilon, delta) DP releases may spend on each source, over all "
        "jobs (a source's own privacy_cap overrides it); without any cap, DP tasks are refused.",
    )

    @field_validator("broker")
    @classmethod
    def _broker_address(cls, value: str) -> str:
        return check_host_port(value, "broker")

    @model_validator(mode="after")
    def _name_sources(self) -> AgentConfig:
        """Tell each source its name, so that its errors name the config field to fix."""
        for name, source in self.sources.items():
            source._name = name
        return self

    def source(self, name: str) -> FileSource | SqlSource:
        """The source called `name`; a refusal naming the configured ones otherwise."""
        try:
            return self.sources[name]
        except KeyError:
            raise AgentConfigError(
                f"no source {name!r} in this agent's config; configured: {sorted(self.sources)}"
            ) from None

    def privacy_cap_for(self, name: str) -> BudgetCap | None:
        """The cap on source `name`: its own, else the agent's; None when neither is set."""
        return self.source(name).privacy_cap or self.privacy_cap

    @classmethod
    def load(cls, path: str | Path) -> AgentConfig:
        """Read the YAML config; relative paths in it are taken from the file's folder."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise AgentConfigError(f"{path}: agent config not found") from exc
        except UnicodeDecodeError as exc:
            raise AgentConfigError(f"{path}: not UTF-8 text; save the config as UTF-8") from exc
        except OSError as exc:
            raise AgentConfigError(f"{path}: cannot read the agent config: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise AgentConfigError(f"{path}: not valid YAML: {exc}") from exc
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise AgentConfigError(
                describe_problems(str(path), exc, "agent config", cls, data)
            ) from exc
        return config.relative_to(path.parent)

    def check_deployment(self) -> list[str]:
        """Refuse to start, naming each config field and its fix, before the agent dials anyone:
        a TLS file missing or not this supplier's identity (the broker would refuse it on every
        call), a linkage secret it cannot use, a state folder it cannot make. Returns warnings
        for file sources not there yet: a mount or an export may bring them before a task needs
        them, and refusing would also stop the agent's other sources."""
        problems = [
            f"tls.{field} {path}: file not found"
            for field in ("ca", "cert", "key", "crl")
            if (path := getattr(self.tls, field)) is not None and not path.is_file()
        ]
        if not problems:
            problems += _identity_problems(self.tls, self.name)
        if self.linkage_secret is not None:
            problems += _secret_problems(self.linkage_secret)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problems.append(f"state_dir {self.state_dir}: {exc.strerror}; choose a writable folder")
        problems += self._sql_problems()
        if problems:
            raise AgentConfigError("agent config: " + "; ".join(problems))
        warnings = [
            f"sources.{name}.path {source.path}: no file there yet; tasks on source {name!r} "
            "fail until it is (fix the path if it is a typo)"
            for name, source in sorted(self.sources.items())
            if isinstance(source, FileSource) and not source.path.is_file()
        ]
        if self.tls.crl is None:
            warnings.append(
                "tls.crl is not set: peer certificates relayed by the broker (secure "
                "aggregation) are not checked against the federation's revocation list; point "
                "it at a copy of the federation's crl.pem"
            )
        return warnings

    def _sql_problems(self) -> list[str]:
        """Why each SQL source cannot be read, found by connecting once: a missing database file
        (never created), a dialect without its driver, a password variable not set, a database
        that refuses the connection. A task on it would fail the same way, every time."""
        from supplier_agent.sources import SourceError, check_sql

        problems = []
        for name in sorted(self.sources):
            source = self.sources[name]
            if not isinstance(source, SqlSource):
                continue
            try:
                check_sql(source)
            except (SourceError, AgentConfigError) as exc:
                problems.append(f"{source.field('url')}: {exc}")
        return problems

    def relative_to(self, base: Path) -> AgentConfig:
        """A copy with every relative path resolved against `base`."""

        def fix(p: Path) -> Path:
            return p if p.is_absolute() else (base / p).resolve()

        sources = {name: source.relative_to(base) for name, source in self.sources.items()}
        tls = TlsFiles(
            ca=fix(self.tls.ca),
            cert=fix(self.tls.cert),
            key=fix(self.tls.key),
            crl=fix(self.tls.crl) if self.tls.crl is not None else None,
        )
        secret = fix(self.linkage_secret) if self.linkage_secret is not None else None
        return self.model_copy(
            update={
                "sources": sources,
                "tls": tls,
                "state_dir": fix(self.state_dir),
                "linkage_secret": secret,
            }
        )


class AgentConfigError(ValueError):
    """A configuration the agent cannot run with; names the file and every problem."""


_FLAG = re.compile(r"--(ca|cert|key)\b")
"""`read_identity` names the client flags; the agent's config names the same files tls.*."""


def _identity_problems(tls: TlsFiles, name: str) -> list[str]:
    """Why tls.ca, tls.cert and tls.key are not supplier `name`'s TLS identity, if they are not:
    a PEM pair issued by the CA whose certificate carries spiffe://<federation>/supplier/<name>,
    which the broker demands on every call."""
    try:
        read_identity(tls.ca, tls.cert, tls.key)
    except CredentialsError as exc:
        return [_FLAG.sub(r"tls.\1", str(exc))]
    except OSError as exc:
        return [f"{exc.filename}: {exc.strerror}; let the agent's user read the TLS files"]
    issue = f"`fedsynth pki issue --role supplier --name {name}`"
    try:
        federation = federation_of_ca(load_cert(tls.ca))
    except IdentityError as exc:
        return [f"tls.ca {tls.ca}: {exc}; use the federation's ca.pem"]
    try:
        principal = principal_from_certificate(load_cert(tls.cert), federation)
    except IdentityError as exc:
        return [f"tls.cert {tls.cert}: {exc}; use the certificate and key from {issue}"]
    if principal.role is not Role.SUPPLIER:
        return [
            f"tls.cert {tls.cert} is the {principal.role} certificate {principal.uri}, not a "
            f"supplier's; point tls.cert and tls.key at the pair from {issue}"
        ]
    if principal.name != name:
        return [
            f"name {name!r} is not the name in tls.cert {tls.cert} ({principal.uri}), so the "
            f"broker would refuse every call; set name: {principal.name} or point tls.cert and "
            f"tls.key at the pair from {issue}"
        ]
    return []


def _secret_problems(path: Path) -> list[str]:
    """Why the linkage secret at `path` cannot key linkage tokens, if it cannot."""
    if not path.is_file():
        return [
            f"linkage_secret {path}: no file there; write the suppliers' shared secret to it "
            "(mode 0600) or remove linkage_secret"
        ]
    try:
        LinkageSecret.from_file(path)
    except SecretError as exc:
        return [f"linkage_secret {path}: {str(exc).removeprefix(f'{path}: ')}"]
    except OSError as exc:
        return [f"linkage_secret {path}: {exc.strerror}; let the agent's user read it"]
    return []
