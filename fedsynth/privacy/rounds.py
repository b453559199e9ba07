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
    """The federated protocol of a DP synthesizer fitted in rounds (dp-marginal, dp-copula).

    `start` fixes the public plan, `round_rhos_` included: one entry per round, set before any
    data is seen, so every party knows the number of rounds and each round's cost up front.
    """

    privacy_cost_: PrivacyCost
    rho_: float
    round_rhos_: list[float]

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


def round_costs(model: RoundModel) -> list[PrivacyCost]:
    """What each round spends (call right after `start`); together exactly `privacy_cost_`.

    Every query of a round has L2 sensitivity 1 and the round's noise is calibrated to its
    share of rho, so a round's cost is that share as zCDP.
    """
    name = getattr(model, "name", "dp")
    return [
        zcdp_cost(rho, label=f"{name} round {number}")
        for number, rho in enumerate(model.round_rhos_, start=1)
    ]


def absorb_earlier(model: RoundModel, sums: list[bytes]) -> None:
    """Bring a freshly started model to the round after `sums` (earlier rounds' published
    float64 sums, in order): post-processing of released noise only."""
    for data in sums:
        model.absorb(vector_from_bytes(data, masked=False))


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
