"""Audit of synthetic tables: fidelity, distinguishability, utility, privacy risk, coverage,
validity, a policy verdict and JSON / HTML reports.

Names are imported on first use (PEP 562): a policy or a report loads no scikit-learn or scipy.
"""

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from fedsynth.audit.policy import AuditPolicy, PolicyError
    from fedsynth.audit.report import AuditReport, CheckResult, ReportError
    from fedsynth.audit.runner import run
    from fedsynth.audit.validity import ConstraintCheck

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "policy": ["AuditPolicy", "PolicyError"],
        "report": ["AuditReport", "CheckResult", "ReportError"],
        "runner": [
            "run",
        ],
        "validity": [
            "ConstraintCheck",
        ],
    },
)

__all__ = [
    "AuditPolicy",
    "AuditReport",
    "CheckResult",
    "ConstraintCheck",
    "PolicyError",
    "ReportError",
    "run",
]
