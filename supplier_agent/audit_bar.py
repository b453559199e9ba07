"""The site's own audit bar: the job's policy tightened by the thresholds in the agent config."""

from __future__ import annotations

from typing import Any

from fedsynth.audit.policy import AuditPolicy, PolicyError


def site_policy(job_policy: AuditPolicy, min_audit: dict[str, Any]) -> AuditPolicy:
    """The stricter of the job's and the site's threshold for every field the site sets.

    `min_*` thresholds take the larger value and `max_*` ones the smaller, so a job can never
    loosen what the site demands; other fields (sample sizes, seed) come from the site as given.
    """
    merged = job_policy.model_dump()
    for name, value in min_audit.items():
        if name not in merged:
            raise PolicyError(
                f"agent config egress.min_audit: unknown threshold {name!r}; "
                f"known: {', '.join(AuditPolicy.model_fields)}"
            )
        if name.startswith("min_"):
            merged[name] = max(merged[name], value)
        elif name.startswith("max_"):
            merged[name] = min(merged[name], value)
        else:
            merged[name] = value
    return AuditPolicy.model_validate(merged)
