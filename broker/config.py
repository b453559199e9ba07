"""The broker's configuration document (`broker.yaml`), validated with pydantic."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fedsynth.documents import describe_problems
from fedsynth.security.principals import check_name
from fedsynth.wire.address import check_host_port


class TLSConfig(BaseModel):
    """Files of the broker's identity; `cert`/`key` are re-read when they change (rotation)."""

    model_config = ConfigDict(extra="forbid")

    ca: Path = Field(description="Federation CA certificate (PEM).")
    cert: Path = Field(description="Broker certificate (PEM), SAN spiffe://<federation>/broker/*.")
    key: Path = Field(description="Broker private key (PEM, mode 0600).")
    crl: Path | None = Field(None, description="Revocation list (PEM CRL), reloaded on change.")


RESERVED_WORKERS = 4
"""Worker threads kept for operators, consumers and uploads when every agent is subscribed."""
MESSAGE_OVERHEAD = 64 * 1024
"""Room a chunk message needs beside its bytes (ids, offsets, hashes, protobuf framing)."""


class LimitsConfig(BaseModel):
    """Bounds on what a peer may send or ask for."""

    model_config = ConfigDict(extra="forbid")

    max_message_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024)
    chunk_bytes: int = Field(1024 * 1024, ge=4096)
    max_upload_bytes: int = Field(8 * 1024**3, ge=1)
    max_workers: int = Field(32, ge=4, description="Threads; each subscribed agent holds one.")
    keepalive_time_s: int = Field(30, ge=1, description="Ping idle connections this often.")
    keepalive_timeout_s: int = Field(10, ge=1, description="Drop a peer silent this long.")
    max_open_uploads: int = Field(
        16,
        ge=1,
        description="Uploads one supplier may have begun and not yet finished, over all its "
        "jobs; one more is refused with RESOURCE_EXHAUSTED until one completes or its job ends.",
    )
    max_open_upload_bytes: int = Field(
        32 * 1024**3,
        ge=1,
        description="Total declared size of one supplier's unfinished uploads (the disk it may "
        "claim); an upload that would pass it is refused with RESOURCE_EXHAUSTED.",
    )
    max_statistics_bytes: int = Field(
        256 * 1024**2,
        ge=1,
        description="Size of one statistics upload (counts, sums, model weights); they are "
        "small, and kept until retention takes their job, so a larger one is refused.",
    )
    max_supplier_rows: int = Field(
        10_000_000,
        ge=1,
        description="Rows of one supplier's raw, prepared or synthetic table the broker takes; "
        "it pools them in memory, so a table declaring more is refused before it is decoded.",
    )
    max_supplier_table_bytes: int = Field(
        2 * 1024**3,
        ge=1,
        description="Bytes one supplier's table may take decoded (text at full length).",
    )
    step_workers: int = Field(
        2,
        ge=1,
        description="Broker steps (fits, audits, merges) run at once, each for another job, so "
        "a long fit does not hold up other jobs; each may hold its job's rows in memory.",
    )
    max_streams_per_principal: int | None = Field(
        None,
        ge=1,
        description="Calls one certificate may have open at once among those that hold a "
        "thread for long (Upload, BeginUpload, FetchArtifact, Download); one more is refused "
        "with RESOURCE_EXHAUSTED. Default max_workers // 8 (at least 1); at most max_workers // 2, "
        "so one peer cannot take the pool. Subscribe is separate: one stream per supplier.",
    )

    @model_validator(mode="after")
    def _chunks_fit_messages(self) -> LimitsConfig:
        if self.chunk_bytes + MESSAGE_OVERHEAD > self.max_message_bytes:
            raise ValueError(
                f"chunk_bytes ({self.chunk_bytes}) plus {MESSAGE_OVERHEAD} bytes of framing must "
                f"fit in max_message_bytes ({self.max_message_bytes}), or every transfer fails: "
                "lower chunk_bytes or raise max_message_bytes"
            )
        return self

    @model_validator(mode="after")
    def _streams_leave_workers(self) -> LimitsConfig:
        if (
            self.max_streams_per_principal is not None
            and self.max_streams_per_principal > self.max_workers // 2
        ):
            raise ValueError(
                f"max_streams_per_principal ({self.max_streams_per_principal}) may be at most "
                f"half of max_workers ({self.max_workers}): one peer must not hold the pool"
            )
        return self

    @property
    def streams_per_principal(self) -> int:
        """The effective `max_streams_per_principal`."""
        if self.max_streams_per_principal is not None:
            return self.max_streams_per_principal
        return max(1, self.max_workers // 8)


class RetentionConfig(BaseModel):
    """How long the stored objects of ended jobs are kept (broker/retention.py)."""

    model_config = ConfigDict(extra="forbid")

    keep_finished_days: float | None = Field(
        30,
        ge=0,
        description="Days the objects of an ended job (statistics, models, unreleased parts, "
        "rejected candidates) are kept after it ended; releases are always kept. None: forever.",
    )
    sweep_every_s: float = Field(3600, gt=0, description="Seconds between retention passes.")


class BrokerConfig(BaseModel):
    """Everything `fedsynth-broker serve` needs."""

    model_config = ConfigDict(extra="forbid")

    federation: str
    name: str = "broker"
    listen: str = Field("127.0.0.1:7443", description="HOST:PORT of the mutual-TLS endpoint.")
    health_listen: str | None = Field(
        None, description="HOST:PORT of a plaintext endpoint serving only gRPC health checks."
    )
    state_dir: Path = Field(description="SQLite database, artifacts and uploads live here.")
    key_file: Path = Field(description="256-bit key for encryption at rest (created if absent).")
    tls: TLSConfig
    suppliers: list[str] = Field(default_factory=list, description="Enrolled supplier names.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

    @field_validator("federation", "name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("listen", "health_listen")
    @classmethod
    def _valid_address(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_host_port(value, info.field_name, listening=True)

    @field_validator("suppliers")
    @classmethod
    def _valid_suppliers(cls, value: list[str]) -> list[str]:
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"suppliers {repeated} are listed more than once; list each once")
        return [check_name(v, "supplier") for v in value]

    @model_validator(mode="after")
    def _threads_for_every_agent(self) -> BrokerConfig:
        """Each connected agent's task stream holds a worker thread for as long as it is open;
        with every enrolled agent connected, operators and consumers still need threads."""
        spare = self.limits.max_workers - len(self.suppliers)
        if spare < RESERVED_WORKERS:
            raise ValueError(
                f"limits.max_workers ({self.limits.max_workers}) leaves {spare} thread(s) once "
                f"all {len(self.suppliers)} enrolled agents hold their task streams; raise it to "
                f"at least {len(self.suppliers) + RESERVED_WORKERS}"
            )
        return self

    @property
    def database(self) -> Path:
        return self.state_dir / "broker.sqlite3"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "artifacts"

    @property
    def uri(self) -> str:
        """The broker's own principal, the actor of what it does by itself in the audit log."""
        return f"spiffe://{self.federation}/broker/{self.name}"

    @classmethod
    def load(cls, path: str | Path) -> BrokerConfig:
        """Read YAML; relative paths are resolved against the file's folder."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text("utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: config file not found") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(
                describe_problems(str(path), exc, "broker config", cls, data)
            ) from exc
        return config.resolved(path.parent)

    def resolved(self, base: Path) -> BrokerConfig:
        """A copy with every relative path made absolute against `base`."""

        def fix(path: Path) -> Path:
            return path if path.is_absolute() else (base / path).resolve()

        tls = self.tls.model_copy(
            update={
                "ca": fix(self.tls.ca),
                "cert": fix(self.tls.cert),
                "key": fix(self.tls.key),
                "crl": fix(self.tls.crl) if self.tls.crl else None,
            }
        )
        return self.model_copy(
            update={"state_dir": fix(self.state_dir), "key_file": fix(self.key_file), "tls": tls}
        )


class ConfigError(ValueError):
    """A broker config that cannot be used; the message names the file and each problem."""
