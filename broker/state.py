"""Everything a running broker holds, opened from its config: database, log, artifacts, uploads."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from broker.artifacts import ArtifactStore
from broker.auditlog import AuditLog
from broker.config import BrokerConfig
from broker.storage_faults import StorageFaults
from broker.store import Database, JobRow, Store
from broker.uploads import UploadReceiver
from fedsynth.jobs import JobState
from fedsynth.security.atrest import create_key_file, key_fingerprint, load_key_file
from fedsynth.security.certificates import Issued, load_cert, load_key

log = logging.getLogger(__name__)


class StateError(ValueError):
    """The state directory cannot be opened as it is: its database is damaged, or its at-rest
    key is missing or another one."""


@dataclass
class BrokerState:
    """The broker's durable state plus a signal that wakes supplier task streams."""

    config: BrokerConfig
    db: Database
    store: Store
    audit: AuditLog
    artifacts: ArtifactStore
    uploads: UploadReceiver
    tasks_changed: threading.Condition = field(default_factory=threading.Condition)
    storage_faults: StorageFaults = field(default_factory=StorageFaults)
    _ending: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, config: BrokerConfig) -> BrokerState:
        """Open (or create) the state under `config.state_dir`; creates the at-rest key with a
        new state only, and refuses a state whose key is missing or another one (StateError)."""
        config.state_dir.mkdir(parents=True, exist_ok=True)
        if not config.key_file.exists():
            if config.database.exists():
                raise StateError(
                    f"key_file {config.key_file} is missing, but {config.database} holds this "
                    "broker's state, whose audit log and encrypted rows need that key: restore "
                    "the key file from backup (a new key would leave them unreadable)"
                )
            create_key_file(config.key_file)
        key = load_key_file(config.key_file)
        fingerprint = key_fingerprint(key)
        try:
            db = Database(config.database)
            store = Store(db)
            recorded = store.key_fingerprint(fingerprint)
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"state database {config.database} is damaged or unreadable ({exc}): restore "
                "state_dir from backup"
            ) from exc
        if recorded != fingerprint:
            raise StateError(
                f"key_file {config.key_file} is not the key this state_dir was created with "
                "(its fingerprint differs): give the broker its own key file back"
            )
        withdrawn = store.enroll(config.suppliers)
        if withdrawn:
            log.warning(
                "suppliers no longer in the config's suppliers list are refused: %s", withdrawn
            )
        audit = AuditLog(db, key, config.state_dir / "audit-head.json")
        artifacts = ArtifactStore(config.artifacts_dir, key)
        uploads = UploadReceiver(
            store, artifacts, audit, config.state_dir / "uploads", config.limits
        )
        return cls(config, db, store, audit, artifacts, uploads)

    def signing_identity(self) -> Issued:
        """The broker's current key and certificate (re-read, so rotation applies)."""
        return Issued(load_key(self.config.tls.key), load_cert(self.config.tls.cert))

    def end_job(self, job_id: str, outcome: JobState, reason: str, actor: str) -> JobRow | None:
        """End an unfinished job, once: close its pending tasks so no agent starts or resumes
        work for it, purge its raw and prepared rows and the partial bytes of its unfinished
        uploads, then record the outcome (anyone who sees the job ended sees its rows gone).
        None when the job had already ended."""
        with self._ending:
            if JobState(self.store.job(job_id).state).finished:
                return None
            for task in self.store.tasks_of_job(job_id):
                if task.state == "pending":
                    self.store.finish_task(task.task_id, False, b"", f"job {outcome.value}")
            self.uploads.purge_job(job_id, actor)
            with self.db.transaction() as conn:
                job = self.store.set_job_state(job_id, outcome, reason)
                self.audit.append_within(conn, actor, f"job.{outcome.value}", job_id, reason=reason)
            self.audit.sync_head()
        self.notify_tasks()
        return job

    @contextmanager
    def ending_held(self, job_id: str) -> Iterator[bool]:
        """Hold off every job's ending while the block runs (a release must not be published
        for a job cancelled meanwhile); yields whether `job_id` is running."""
        with self._ending:
            yield self.store.job(job_id).state == JobState.RUNNING

    def settled_state(self, job_id: str) -> str:
        """The job's state once any ending in progress is done (`end_job` purges the rows
        before it sets the state, so a plain read in between still says running)."""
        with self._ending:
            return self.store.job(job_id).state

    def notify_tasks(self) -> None:
        with self.tasks_changed:
            self.tasks_changed.notify_all()

    def close(self) -> None:
        self.db.close()
