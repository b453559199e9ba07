"""Federated DP fitting, the parts the broker and the suppliers must agree on.

Both sides rebuild the job's DP model from the spec and bring it to the current round by
absorbing the published sums of earlier rounds (post-processing of released noise only); each
round's privacy cost; and how vectors travel: raw little-endian uint64 (masked, under secure
aggregation) or float64 (in the clear), never pickled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from fedsynth.jobs import JobSpec
from fedsynth.privacy.accountant import PrivacyCost, zcdp_cost
from fedsynth.schema import TableSchema

if TYPE_CHECKING:
    from fedsynth.synth.artifact import Artifact


class RoundModel(Protocol):
    """The federated protocol of a two-round DP synthesizer (dp-marginal, dp-copula)."""

    privacy_cost_: PrivacyCost
    rho_: float

    def start(self, schema: TableSchema) -> None: ...

    def measure(
        self, df: pd.DataFrame, share: float = 1.0, rng: np.random.Generator | None = None
    ) -> np.ndarray: ...

    def absorb(self, noisy: np.ndarray) -> None: ...

    def noise_variances(self) -> np.ndarray: ...

    def sample(
        self, n: int, *, seed: int | None = None, conditions: Any = None
    ) -> pd.DataFrame: ...

    def to_artifact(self) -> Artifact: ...


def start_model(spec: JobSpec) -> RoundModel:
    """The job's DP model with its public plan set up (round one open)."""
    from fedsynth.synth import synthesizer_class

    model: Any = synthesizer_class(spec.synthesizer.name)(**spec.model_params())
    model.start(spec.model_schema())
    return model


def round_costs(model: RoundModel) -> tuple[PrivacyCost, PrivacyCost]:
    """What round one and round two each spend; together exactly `model.privacy_cost_`.

    Call right after `start`. dp-marginal: every round-one query has L2 sensitivity 1, so round
    one is the sum of 1 / (2 sigma^2) over its queries; dp-copula: its `marginal_share` of rho.
    """
    from fedsynth.synth import DPGaussianCopula, DPMarginalSynthesizer

    if isinstance(model, DPMarginalSynthesizer):
        first = sum(1.0 / (2.0 * q.sigma**2) for q in model.queries_)
    elif isinstance(model, DPGaussianCopula):
        first = model.rho_ * model.marginal_share
    else:
        raise TypeError(f"{type(model).__name__} is not fitted in federated DP rounds")
    first = min(first, model.rho_)
    name = getattr(model, "name", "dp")
    return (
        zcdp_cost(first, label=f"{name} round 1"),
        zcdp_cost(max(model.rho_ - first, 0.0), label=f"{name} round 2"),
    )


def vector_bytes(vector: np.ndarray, *, masked: bool) -> bytes:
    """A round's vector as it travels: uint64 (masked) or float64, little-endian, raw."""
    dtype = "<u8" if masked else "<f8"
    return np.ascontiguousarray(vector, dtype=dtype).tobytes()


def vector_from_bytes(data: bytes, *, masked: bool) -> np.ndarray:
    """The vector `vector_bytes` wrote (ValueError when the length is not whole values)."""
    if len(data) % 8:
        raise ValueError(f"{len(data)} bytes are not a whole number of 8-byte values")
    if masked:
        return np.frombuffer(data, dtype="<u8").astype(np.uint64)
    vector = np.frombuffer(data, dtype="<f8").astype(np.float64)
    if not np.all(np.isfinite(vector)):
        raise ValueError("a round's sums must be finite numbers")
    return vector


def noise_share(participants: int, secure: bool) -> float:
    """Each supplier's share of the noise variance: 1/k under secure aggregation, else all."""
    if participants < 1:
        raise ValueError("a round needs at least one participant")
    return 1.0 / participants if secure else 1.0
