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
from fedsynth.privacy.accountant import PrivacyCost
from fedsynth.privacy.secagg import FEDERATED_BOUND_BITS
from fedsynth.schema import TableSchema

if TYPE_CHECKING:
    from fedsynth.synth.artifact import Artifact

CLEAR_BOUND = 2.0**FEDERATED_BOUND_BITS
"""The largest magnitude a vector in the clear may hold: the range secure aggregation admits for
a round's whole sum, so one party's finite values cannot overflow the broker's sum to inf."""


class RoundModel(Protocol):
    """The federated protocol of a DP synthesizer fitted in rounds (dp-marginal, dp-copula,
    DP-TVAE by federated averaging).

    `planned_rounds` tells from the parameters and the public schema alone how many rounds a
    fit takes, so a plan can be laid out without starting a model; `start` fixes the public
    plan before any data is seen; `round_costs` states what each round spends (call it after
    `start`).
    """

    rounds_: int

    def planned_rounds(self, schema: TableSchema) -> int: ...

    def start(self, schema: TableSchema) -> None: ...

    def round_costs(self, rows: int | None = None) -> list[PrivacyCost]: ...

    def measure(
        self, df: pd.DataFrame, share: float = 1.0, rng: np.random.Generator | None = None
    ) -> np.ndarray: ...

    def absorb(self, noisy: np.ndarray) -> None: ...

    def sample(
        self, n: int, *, seed: int | None = None, conditions: Any = None
    ) -> pd.DataFrame: ...

    def to_artifact(self) -> Artifact: ...


def start_model(spec: JobSpec) -> RoundModel:
    """The job's DP model with its public plan set up (round one open)."""
    model = unstarted_model(spec)
    model.start(spec.model_schema())
    return model


def unstarted_model(spec: JobSpec) -> RoundModel:
    """The job's DP model with its parameters only (for `planned_rounds`: builds nothing)."""
    from fedsynth.synth import synthesizer_class

    model: Any = synthesizer_class(spec.synthesizer.name)(**spec.model_params())
    return model


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
    """The vector `vector_bytes` wrote; ValueError when the length is not whole values, or a
    value in the clear is not finite or not within +-CLEAR_BOUND (noisy ones may be negative)."""
    if len(data) % 8:
        raise ValueError(f"{len(data)} bytes are not a whole number of 8-byte values")
    if masked:
        return np.frombuffer(data, dtype="<u8").astype(np.uint64)
    vector = np.frombuffer(data, dtype="<f8").astype(np.float64)
    if not np.all(np.isfinite(vector)) or np.any(np.abs(vector) > CLEAR_BOUND):
        raise ValueError(f"a round's sums must be finite numbers within +-{CLEAR_BOUND:g}")
    return vector


def noise_share(participants: int, secure: bool) -> float:
    """Each supplier's share of the noise variance: 1/(k-1) of it under secure aggregation, else
    all of it. The round's sum goes back to every site, so a site can subtract its own vector:
    the other k-1 shares must still add up to the whole noise. The broker and consumers see
    k/(k-1) of it."""
    if participants < 1:
        raise ValueError("a round needs at least one participant")
    if not secure or participants == 1:
        return 1.0
    return 1.0 / (participants - 1)
