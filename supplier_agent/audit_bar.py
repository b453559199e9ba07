"""The site's own audit bar: the job's policy, never looser than what the site passes alone."""

from __future__ import annotations

from typing import Any

from fedsynth.audit.policy import AuditPolicy, PolicyError

SAMPLE_SIZES = ("_rows", "_predicates")
"""Policy fields that size an audit's samples: larger is stricter."""


def site_policy(job_policy: AuditPolicy, min_audit: dict[str, Any]) -> AuditPolicy:
    """The stricter of the job's and the site's threshold for every `min_*` and `max_*` field.

    The site's thresholds are its `egress.min_audit`, and the project's defaults (`AuditPolicy()`)
    for those it leaves out: the job comes from the broker, so a job asking for a lenient audit
    (say, exact copies allowed) must not loosen what this site lets out. A site that means to
    pass looser output says so in `min_audit`. Sample sizes (`*_rows`, `*_predicates`) are
    likewise at least the site's: a small sample blunts the privacy attacks. Other fields (the
    seed, the bins) come from the job unless the site sets them.
    """
    merged = job_policy.model_dump()
    unknown = sorted(set(min_audit) - set(merged))
    if unknown:
        raise PolicyError(
            f"agent config egress.min_audit: unknown threshold(s) {unknown}; "
            f"known: {', '.join(AuditPolicy.model_fields)}"
        )
    defaults = {
        name: value
        for name, value in AuditPolicy().model_dump().items()
        if name.startswith(("min_", "max_")) or name.endswith(SAMPLE_SIZES)
    }
    for name, value in (defaults | min_audit).items():
        if name.startswith("min_") or name.endswith(SAMPLE_SIZES):
            merged[name] = max(merged[name], value)
        elif name.startswith("max_"):
            merged[name] = min(merged[name], value)
        else:
            merged[name] = value
    return AuditPolicy.model_validate(merged)
