"""The consumer client: list, inspect and pull released synthetic datasets, verified first."""

from consumer_client.client import (
    Client,
    ReleaseNotFound,
    ReleaseVerificationError,
    VerifiedManifest,
)

__all__ = ["Client", "ReleaseNotFound", "ReleaseVerificationError", "VerifiedManifest"]
