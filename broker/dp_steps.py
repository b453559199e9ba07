"""The broker's actions in federated DP rounds: relay the round's keys, sum the vectors, fit.

Under secure aggregation the broker sees each supplier's vector only masked; it adds them mod
2^64, and the masks cancel only when every participant's vector is there. A participant that
did not deliver makes the broker restart the round without it (a new round id, so no mask is
reused, and fresh keys); the survivors are charged again for the new round. Each round's decoded
sum is kept as an artifact: the earlier rounds' sums are what the suppliers plan the next round
on, and the last round's sum completes the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import ValidationError

from broker.steps import STATISTICS, JobContext, StepFailed, parquet_bytes
from fedsynth.plans import RoundInfo
from fedsynth.privacy.announcements import KeyBundle, SignedKey
from fedsynth.privacy.rounds import (
    RoundModel,
    absorb_earlier,
    start_model,
    vector_bytes,
    vector_from_bytes,
)
from fedsynth.privacy.secagg import SecAggError, SecAggRound, fixed_point_for, unmask_sum

ANNOUNCEMENT = "announcement.json"
MEASUREMENT = "measurement.bin"


class RoundRestart(Exception):
    """Round `number` must run again as `round_id` with `participants` only."""

    def __init__(self, number: int, round_id: str, participants: list[str], reason: str) -> None:
        super().__init__(reason)
        self.number = number
        self.round_id = round_id
        self.participants = participants
        self.reason = reason


def _info(ctx: JobContext) -> RoundInfo:
    if ctx.dp_round is None:
        raise StepFailed("a DP round step ran outside a DP round")
    return ctx.dp_round


def collect_keys(ctx: JobContext) -> dict[str, Any]:
    """Bundle the round's signed key announcements for every participant to check."""
    info = _info(ctx)
    keys = []
    for supplier, result in sorted(ctx.supplier_results(f"announce_{info.number}").items()):
        try:
            entry = SignedKey.model_validate_json(
                ctx.upload(supplier, result, ANNOUNCEMENT, STATISTICS)
            )
        except ValidationError as exc:
            raise StepFailed(
                f"supplier {supplier!r} sent an invalid key announcement: {exc}"
            ) from exc
        announced = entry.announcement
        if announced.supplier != supplier or announced.round_id != info.round_id:
            raise StepFailed(
                f"supplier {supplier!r} announced a key as {announced.supplier!r} for round "
                f"{announced.round_id!r}; this round is {info.round_id!r}"
            )
        keys.append(entry)
    if len(keys) < 2:
        raise StepFailed(
            f"secure aggregation needs at least two suppliers; only {len(keys)} announced a key"
        )
    bundle = KeyBundle(
        round_id=info.round_id,
        participants=sorted(k.announcement.supplier for k in keys),
        keys=keys,
    )
    digest = ctx.state.artifacts.put_bytes(bundle.model_dump_json().encode())
    return {"artifacts": {f"keys_{info.number}": digest.sha256}, "round_id": info.round_id}


def round_model(ctx: JobContext, number: int) -> RoundModel:
    """The job's DP model brought to round `number` from the published sums of earlier rounds."""
    model = start_model(ctx.spec)
    absorb_earlier(model, [ctx.stored(ctx.artifact(f"round_{k}_sum")) for k in range(1, number)])
    return model


def sum_round(ctx: JobContext) -> dict[str, Any]:
    """Add up the round's vectors (restarting it if a masked one is missing) and absorb them."""
    info = _info(ctx)
    measured = ctx.results[f"measure_{info.number}"]
    delivered = sorted(measured["suppliers"])
    lost = sorted(set(measured["missing"]) | set(measured["refused"]))
    if lost and info.secure:
        survivors = SecAggRound(info.round_id, (*delivered, *lost)).without(lost)
        raise RoundRestart(
            info.number,
            survivors.round_id,
            delivered,
            f"round {info.number}: no masked vector from {lost}, so the masks cannot cancel; "
            f"restarting it as {survivors.round_id!r} with {delivered}",
        )
    vectors = {}
    for supplier, result in measured["suppliers"].items():
        try:
            vectors[supplier] = vector_from_bytes(
                ctx.upload(supplier, result, MEASUREMENT, STATISTICS), masked=info.secure
            )
        except ValueError as exc:
            raise StepFailed(f"supplier {supplier!r} sent an unreadable vector: {exc}") from exc
    total = _total(info, vectors)
    model = round_model(ctx, info.number)
    last = info.number == model.rounds_
    try:
        model.absorb(total)
    except ValueError as exc:
        raise StepFailed(f"round {info.number}'s sums do not fit the model: {exc}") from exc
    artifacts = ctx.state.artifacts
    outputs = {f"round_{info.number}_sum": artifacts.put_bytes(vector_bytes(total, masked=False))}
    if last:
        candidate = model.sample(ctx.spec.rows, seed=ctx.spec.seed, progress=ctx.checkpoint)
        outputs["model"] = artifacts.put_bytes(model.to_artifact().to_bytes())
        outputs["candidate"] = artifacts.put_bytes(parquet_bytes(candidate))
    return {
        "artifacts": {name: digest.sha256 for name, digest in outputs.items()},
        "summed": sorted(vectors),
    }


def _total(info: RoundInfo, vectors: dict[str, np.ndarray]) -> np.ndarray:
    sizes = {v.size for v in vectors.values()}
    if len(sizes) != 1:
        raise StepFailed(f"round {info.number}: the suppliers' vectors differ in length {sizes}")
    if not info.secure:
        return np.sum(list(vectors.values()), axis=0)
    round_ = SecAggRound(info.round_id, tuple(sorted(vectors)))
    try:
        return fixed_point_for(len(vectors)).decode(unmask_sum(round_, vectors))
    except SecAggError as exc:
        raise StepFailed(f"round {info.number}: {exc}") from exc


DP_ACTIONS = {"collect_keys": collect_keys, "sum_round": sum_round}
