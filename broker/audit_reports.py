"""The broker's own audit of a central or prepared job's candidate, read out for its operator.

A release carries only that audit's summary: the full report and its page describe the pooled
real rows (ranges, histograms, correlations), so they stay in the broker's store, and the
operator reads them on the broker's host.
"""

from __future__ import annotations

import json
from pathlib import Path

from broker.artifacts import object_path
from broker.auditlog import read_only
from broker.config import BrokerConfig

AUDIT_STEP = "synthesize_centrally"
REPORT_FILES = {"report": "report.json", "report_html": "report.html"}


class NoBrokerAudit(LookupError):
    """The broker audited no candidate of this job."""


def broker_audit_files(config: BrokerConfig, job_id: str) -> dict[str, Path]:
    """The stored files of the broker's audit of `job_id`: file name to write -> stored path.
    Reads the database read-only, so a running broker is fine."""
    with read_only(config.database) as db:
        row = db.execute(
            "SELECT result_json FROM job_steps WHERE job_id = ? AND name = ? "
            "ORDER BY step DESC LIMIT 1",
            (job_id, AUDIT_STEP),
        ).fetchone()
    if row is None:
        raise NoBrokerAudit(
            f"job {job_id}: the broker audited no candidate of it (a local or federated job is "
            "audited at each site, whose reports stay there; a central or prepared job has not "
            "reached its audit, or there is no such job)"
        )
    stored = json.loads(row[0])["artifacts"]
    return {
        name: object_path(config.artifacts_dir, stored[key]) for key, name in REPORT_FILES.items()
    }
