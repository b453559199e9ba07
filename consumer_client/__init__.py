"""The consumer client: list, inspect and pull released synthetic datasets, verified first."""

from consumer_client.client import Client, ReleaseVerificationError, VerifiedManifest

__all__ = ["Client", "ReleaseVerificationError", "VerifiedManifest"]
