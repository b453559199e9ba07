"""Audit of synthetic tables: fidelity, distinguishability, utility, privacy risk, coverage,
validity, a policy verdict and JSON / HTML reports."""

from fedsynth.audit.policy import AuditPolicy, PolicyError
from fedsynth.audit.report import AuditReport, CheckResult, ReportError
from fedsynth.audit.runner import run
from fedsynth.audit.validity import ConstraintCheck

__all__ = [
    "AuditPolicy",
    "AuditReport",
    "CheckResult",
    "ConstraintCheck",
    "PolicyError",
    "ReportError",
    "run",
]
