"""The site's side of differential privacy: its ledger, and the federated DP round tasks.

Every DP release is charged to the site's ledger (in its state_dir) before it leaves, against
the cap in the agent's config; an agent without a cap refuses DP tasks. In a federated DP round
under secure aggregation the site first announces a fresh X25519 key signed with its certificate
key (the private half stays in the state_dir, mode 0600, until it masks one vector), then checks
every peer's certificate and signature itself, charges, measures with 1/k of the noise, masks,
and sends the masked vector; without secure aggregation it sends its measurement with the full
noise. The charge is the round's own cost under the task's id, so each vector that leaves is
paid for once, also when the broker restarts a round.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import ValidationError

from fedsynth.files import atomic_write_bytes
from fedsynth.jobs import Topology
from fedsynth.plans import ChargeReport, RoundInfo, TaskKind
from fedsynth.privacy.accountant import PrivacyCost, approximate_cost, compose
from fedsynth.privacy.announcements import KeyBundle, SignedKey, certificate_keys
from fedsynth.privacy.ledger import LedgerDamaged, LedgerError, PrivacyLedger
from fedsynth.privacy.rounds import (
    RoundModel,
    absorb_earlier,
    noise_share,
    start_model,
    vector_bytes,
)
from fedsynth.privacy.secagg import (
    SecAggError,
    SecAggParty,
    SecAggRound,
    fixed_point_for,
    verify_announcements,
)
from fedsynth.security.ca import load_crl
from fedsynth.security.certificates import load_cert, load_key, write_private
from fedsynth.security.principals import federation_of_ca
from supplier_agent.config import ArtifactKind
from supplier_agent.outgoing import OutFile, Outgoing, TaskRefused

if TYPE_CHECKING:
    from supplier_agent.tasks import TaskContext

log = logging.getLogger(__name__)

LEDGER_FILE = "privacy-ledger.sqlite3"
ANNOUNCEMENT = "announcement.json"
MEASUREMENT = "measurement.bin"


def ledger(ctx: TaskContext) -> PrivacyLedger:
    """This site's ledger, capped for the task's source; a refusal when no cap is configured."""
    source = ctx.source
    cap = ctx.config.privacy_cap_for(source)
    if cap is None:
        raise TaskRefused(
            f"the job spends a privacy budget, but this agent's config sets no privacy_cap for "
            f"source {source!r}: add 'privacy_cap: {{epsilon: ..., delta: ...}}' to the agent "
            "config (or to that source) to take part in DP jobs"
        )
    try:
        return PrivacyLedger(ctx.config.state_dir / LEDGER_FILE, supplier=ctx.config.name, cap=cap)
    except LedgerDamaged as exc:
        log.error("%s", exc)
        raise TaskRefused(
            "this site's privacy ledger is damaged (fewer or other charges than it recorded), so "
            "no budget can be charged until the site's operator restores it"
        ) from exc


def check_budget(ctx: TaskContext, cost: PrivacyCost) -> PrivacyLedger:
    """Refuse, before any data is read, a task whose cost the source's cap cannot cover."""
    book = ledger(ctx)
    try:
        book.check(ctx.source, cost, location=_location(ctx))
    except LedgerError as exc:
        raise TaskRefused(str(exc)) from exc
    return book


def charge(ctx: TaskContext, book: PrivacyLedger, cost: PrivacyCost) -> ChargeReport:
    """Charge `cost` under this task's id (a retried task is not charged twice)."""
    try:
        book.charge(ctx.source, ctx.task_id, cost, location=_location(ctx))
    except LedgerError as exc:
        raise TaskRefused(str(exc)) from exc
    return ChargeReport.of(ctx.task_id, ctx.source, cost)


def _location(ctx: TaskContext) -> str:
    return ctx.config.source(ctx.source).location()


def job_budget(ctx: TaskContext) -> PrivacyLedger | None:
    """For a DP job that models this site's rows in one fit (here in `local`, at the broker in
    `prepared` and `central`): the ledger, once the job's (epsilon, delta) fits under the cap."""
    privacy = ctx.payload.job.privacy
    if privacy is None:
        return None
    return check_budget(ctx, job_cost(ctx))


def job_cost(ctx: TaskContext) -> PrivacyCost:
    """The whole DP job's (epsilon, delta), as one charge."""
    privacy = ctx.payload.job.privacy
    assert privacy is not None, "job_cost is for DP jobs"
    fit = "local fit" if ctx.payload.job.topology is Topology.LOCAL else "broker fit"
    return approximate_cost(privacy.epsilon, privacy.delta, fit)


def _round(ctx: TaskContext) -> RoundInfo:
    info = ctx.payload.dp_round
    if info is None or ctx.payload.job.privacy is None:
        raise TaskRefused("a DP round task needs a job with a privacy section and its round")
    if ctx.config.name not in info.participants:
        raise TaskRefused(f"this site is not a participant of round {info.round_id!r}")
    return info


def _rest_of_fit(costs: list[PrivacyCost], info: RoundInfo) -> PrivacyCost:
    """What this round and the rounds after it spend: a site that cannot afford the whole fit
    refuses at its first round instead of spending budget on a fit it cannot finish."""
    if info.number > len(costs):
        raise TaskRefused(f"round {info.number} is past this job's {len(costs)} rounds")
    return compose(costs[info.number - 1 :])


def _costs(ctx: TaskContext, model: RoundModel) -> list[PrivacyCost]:
    """Each round's cost at this site. DP-SGD's depends on the site's number of training rows
    (public, as in opacus); the marginal models' costs depend on nothing the site holds."""
    rows = len(ctx.split()[0]) if ctx.payload.job.synthesizer.name == "tvae" else None
    return model.round_costs(rows)


def _key_path(ctx: TaskContext, round_id: str) -> Path:
    name = hashlib.sha256(round_id.encode()).hexdigest()[:32]
    return ctx.config.state_dir / "secagg" / f"{name}.key"


def secagg_announce(ctx: TaskContext) -> Outgoing:
    """Check the budget, then announce a fresh key for the round, signed by this site."""
    info = _round(ctx)
    if not info.secure:
        raise TaskRefused("key announcements belong to secure aggregation only")
    check_budget(ctx, _rest_of_fit(_costs(ctx, start_model(ctx.payload.job)), info))
    key = X25519PrivateKey.generate()
    path = _key_path(ctx, info.round_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(
        path,
        key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        ),
    )
    tls = ctx.config.tls
    party = SecAggParty(ctx.config.name, load_key(tls.key))
    try:
        announcement = party.announce(SecAggRound(info.round_id, tuple(info.participants)), key)
    except SecAggError as exc:
        raise TaskRefused(str(exc)) from exc
    entry = SignedKey(announcement=announcement, certificate_pem=tls.cert.read_text("ascii"))
    out = ctx.workdir / ANNOUNCEMENT
    atomic_write_bytes(out, entry.model_dump_json().encode())
    return Outgoing({}, (OutFile(out.name, ArtifactKind.STATISTICS, out),))


def _peers(
    ctx: TaskContext, info: RoundInfo
) -> tuple[KeyBundle, dict[str, ec.EllipticCurvePublicKey]]:
    """The round's keys, every certificate and signature checked here, not by the broker."""
    try:
        bundle = KeyBundle.model_validate_json(
            ctx.input(f"keys_{info.number}", ".json").read_bytes()
        )
    except ValidationError as exc:
        raise TaskRefused(f"the round's key bundle is invalid: {exc}") from exc
    if bundle.round_id != info.round_id or sorted(bundle.participants) != sorted(info.participants):
        raise TaskRefused(
            f"the key bundle is for round {bundle.round_id!r} with {sorted(bundle.participants)},"
            f" not the task's round {info.round_id!r} with {sorted(info.participants)}"
        )
    ca = load_cert(ctx.config.tls.ca)
    try:
        keys = certificate_keys(bundle, ca, federation_of_ca(ca), _revoked(ctx, ca))
        verify_announcements(bundle.round(), bundle.announcements(), keys)
    except SecAggError as exc:
        raise TaskRefused(str(exc)) from exc
    return bundle, keys


def _revoked(ctx: TaskContext, ca: x509.Certificate) -> frozenset[int]:
    """Serials on the federation's revocation list, when the config names one."""
    crl = ctx.config.tls.crl
    if crl is None:
        return frozenset()
    try:
        checked = load_crl(crl, ca)
    except (OSError, ValueError) as exc:
        raise TaskRefused(
            f"tls.crl {crl}: cannot read the revocation list ({exc}); copy the federation's "
            "current crl.pem there or remove tls.crl from the agent config"
        ) from exc
    stale = checked.stale_warning()
    if stale is not None:
        log.warning("%s", stale)
    return checked.serials


def dp_measure(ctx: TaskContext) -> Outgoing:
    """One round's noisy sums from this site's training rows, charged before they leave."""
    info = _round(ctx)
    job = ctx.payload.job
    model = start_model(job)
    costs = _costs(ctx, model)
    cost = costs[info.number - 1]
    book = check_budget(ctx, _rest_of_fit(costs, info))
    absorb_earlier(
        model,
        [ctx.input(f"round_{k}_sum", ".f64").read_bytes() for k in range(1, info.number)],
    )
    peers = _peers(ctx, info) if info.secure else None
    key_path = _key_path(ctx, info.round_id)
    if peers is not None and not key_path.exists():
        raise TaskRefused(
            f"this site holds no key for round {info.round_id!r}: a round's key masks one "
            "vector only"
        )
    train, _ = ctx.split()
    report = charge(ctx, book, cost)
    share = noise_share(len(info.participants), info.secure)
    vector = model.measure(train, share=share)
    if peers is None:
        data = vector_bytes(vector, masked=False)
    else:
        bundle, keys = peers
        party = SecAggParty(ctx.config.name, load_key(ctx.config.tls.key))
        party.resume(info.round_id, X25519PrivateKey.from_private_bytes(key_path.read_bytes()))
        fixed = fixed_point_for(len(info.participants))
        masked = party.mask(bundle.round(), fixed.encode(vector), bundle.announcements(), keys)
        data = vector_bytes(masked, masked=True)
        key_path.unlink()
    out = ctx.workdir / MEASUREMENT
    atomic_write_bytes(out, data)
    return Outgoing(
        {"charges": [report.model_dump(mode="json")]},
        (OutFile(out.name, ArtifactKind.STATISTICS, out),),
    )


DP_HANDLERS = {
    TaskKind.SECAGG_ANNOUNCE: secagg_announce,
    TaskKind.DP_MEASURE: dp_measure,
}
