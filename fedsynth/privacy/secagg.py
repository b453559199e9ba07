"""Secure aggregation of suppliers' statistics: the broker learns the sum and nothing else.

Each round, every supplier makes a fresh X25519 key pair and announces the public key signed by
its certificate key (ECDSA P-256), so the broker cannot swap in keys of its own. Every pair of
suppliers agrees on a 256-bit secret, expands it with HKDF-SHA256 (salted by the round id) into a
ChaCha20 key, and the keystream is the pair's mask. The lower-named supplier adds the mask, the
other subtracts it, modulo 2^64, so the masks cancel in the sum. Values are fixed-point integers
and the encoder refuses settings under which the sum of all parties could wrap around 2^64.
If a supplier drops out, the masks no longer cancel: the round restarts without it.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field

_DOMAIN = b"fedsynth-secagg-v1"
_MODULUS_BITS = 64


class SecAggError(ValueError):
    """A secure-aggregation message or setting that cannot be used safely."""


class DropoutError(SecAggError):
    """Some participants sent no masked vector: restart the round without them."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = tuple(sorted(missing))
        super().__init__(
            f"no masked vector from {list(self.missing)}: their masks do not cancel, so the sum "
            "cannot be recovered; restart the round without them (SecAggRound.without)"
        )


class KeyAnnouncement(BaseModel):
    """A supplier's X25519 public key for one round, signed by its certificate key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    supplier: str = Field(min_length=1)
    round_id: str = Field(min_length=1)
    public_key: str = Field(description="Raw X25519 public key, base64.")
    signature: str = Field(description="DER ECDSA-SHA256 signature of the signed message, base64.")

    def signed_message(self) -> bytes:
        return _signed_message(self.supplier, self.round_id, base64.b64decode(self.public_key))


@dataclass(frozen=True)
class SecAggRound:
    """One aggregation round: its id and who takes part."""

    round_id: str
    participants: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.participants)) != len(self.participants):
            raise SecAggError(f"round {self.round_id!r}: participants repeat")
        if len(self.participants) < 2:
            raise SecAggError(
                f"round {self.round_id!r}: secure aggregation needs at least two suppliers; with "
                "one, the sum is that supplier's own vector"
            )

    def without(self, dropped: Sequence[str]) -> SecAggRound:
        """The restarted round: a new id (so no mask is reused) and the dropped parties gone."""
        rest = tuple(p for p in self.participants if p not in set(dropped))
        digest = hashlib.sha256(f"{self.round_id}|{','.join(sorted(dropped))}".encode())
        return SecAggRound(f"{self.round_id}.r{digest.hexdigest()[:12]}", rest)


@dataclass(frozen=True)
class FixedPoint:
    """Fixed-point encoding mod 2^64 for sums of `parties` values each within +-`bound`."""

    bound: float
    parties: int
    fraction_bits: int = 24

    def __post_init__(self) -> None:
        if not (math.isfinite(self.bound) and self.bound > 0) or self.parties < 1:
            raise SecAggError("fixed point needs a positive finite bound and at least one party")
        largest_sum = self.parties * (self.bound * 2.0**self.fraction_bits + 1)
        if largest_sum >= 2.0 ** (_MODULUS_BITS - 1):
            raise SecAggError(
                f"{self.parties} parties x bound {self.bound} at {self.fraction_bits} fraction "
                "bits can wrap around 2^64; lower the bound or the fraction bits"
            )

    def encode(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)) or np.any(np.abs(values) > self.bound):
            raise SecAggError(
                f"values must be finite and within +-{self.bound} for this encoding; "
                f"the largest is {np.nanmax(np.abs(values)) if values.size else 0}"
            )
        scaled = np.rint(values * 2.0**self.fraction_bits).astype(np.int64)
        return scaled.view(np.uint64)

    def decode(self, total: np.ndarray) -> np.ndarray:
        return np.asarray(total, dtype=np.uint64).view(np.int64).astype(np.float64) / (
            2.0**self.fraction_bits
        )


FEDERATED_BOUND_BITS = 38
"""Each party's values stay within +-2^38 / parties, so k parties' sum cannot wrap at 24 bits."""


def fixed_point_for(parties: int) -> FixedPoint:
    """The encoding every party of a federated DP round and the broker agree on."""
    return FixedPoint(bound=2.0**FEDERATED_BOUND_BITS / max(parties, 1), parties=parties)


@dataclass
class SecAggParty:
    """One supplier's side: announce a signed key, then mask its encoded vector."""

    supplier: str
    signing_key: ec.EllipticCurvePrivateKey
    _keys: dict[str, X25519PrivateKey] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.signing_key, ec.EllipticCurvePrivateKey) or not isinstance(
            self.signing_key.curve, ec.SECP256R1
        ):
            raise SecAggError("the signing key must be the supplier's ECDSA P-256 private key")

    def announce(self, round_: SecAggRound, key: X25519PrivateKey | None = None) -> KeyAnnouncement:
        """A key pair for this round (fresh unless the caller made `key` to keep it across a
        restart), its public half signed by the certificate key."""
        if self.supplier not in round_.participants:
            raise SecAggError(f"{self.supplier!r} is not a participant of {round_.round_id!r}")
        key = key if key is not None else X25519PrivateKey.generate()
        self._keys[round_.round_id] = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        signature = self.signing_key.sign(
            _signed_message(self.supplier, round_.round_id, raw), ec.ECDSA(hashes.SHA256())
        )
        return KeyAnnouncement(
            supplier=self.supplier,
            round_id=round_.round_id,
            public_key=base64.b64encode(raw).decode(),
            signature=base64.b64encode(signature).decode(),
        )

    def resume(self, round_id: str, key: X25519PrivateKey) -> None:
        """Take back the key this party announced for `round_id` (kept by an agent that
        announced in one task and masks in the next)."""
        self._keys[round_id] = key

    def mask(
        self,
        round_: SecAggRound,
        encoded: np.ndarray,
        announcements: Sequence[KeyAnnouncement],
        verify_keys: Mapping[str, ec.EllipticCurvePublicKey],
    ) -> np.ndarray:
        """`encoded` plus every pairwise mask of this round, mod 2^64.

        `verify_keys` maps each participant to the public key of its certificate; an
        announcement that is missing, from another round, or not signed by that key is refused.
        """
        if round_.round_id not in self._keys:
            raise SecAggError(f"{self.supplier!r} has no key for round {round_.round_id!r}")
        peers = verify_announcements(round_, announcements, verify_keys)
        key = self._keys.pop(round_.round_id)
        masked = np.asarray(encoded, dtype=np.uint64).copy()
        for peer, public in peers.items():
            if peer == self.supplier:
                continue
            secret = key.exchange(public)
            stream = _mask_stream(secret, round_.round_id, self.supplier, peer, masked.size)
            masked = masked + stream if self.supplier < peer else masked - stream
        return masked


def verify_announcements(
    round_: SecAggRound,
    announcements: Sequence[KeyAnnouncement],
    verify_keys: Mapping[str, ec.EllipticCurvePublicKey],
) -> dict[str, X25519PublicKey]:
    """Check every participant's announcement; return their X25519 keys."""
    by_supplier = {a.supplier: a for a in announcements}
    missing = set(round_.participants) - set(by_supplier)
    if missing:
        raise SecAggError(f"round {round_.round_id!r}: no key announced by {sorted(missing)}")
    keys = {}
    for supplier in round_.participants:
        announcement = by_supplier[supplier]
        if announcement.round_id != round_.round_id:
            raise SecAggError(
                f"{supplier!r} announced a key for round {announcement.round_id!r}, not "
                f"{round_.round_id!r}; a key is valid for one round only"
            )
        cert_key = verify_keys.get(supplier)
        if cert_key is None:
            raise SecAggError(f"no certificate key known for {supplier!r}")
        try:
            cert_key.verify(
                base64.b64decode(announcement.signature),
                announcement.signed_message(),
                ec.ECDSA(hashes.SHA256()),
            )
        except (InvalidSignature, ValueError) as exc:
            raise SecAggError(
                f"{supplier!r}'s key for round {round_.round_id!r} is not signed by its "
                "certificate: refusing it (a substituted key would let someone unmask)"
            ) from exc
        keys[supplier] = X25519PublicKey.from_public_bytes(
            base64.b64decode(announcement.public_key)
        )
    return keys


def unmask_sum(round_: SecAggRound, masked: Mapping[str, np.ndarray]) -> np.ndarray:
    """The broker's step: the sum mod 2^64 of every participant's masked vector.

    DropoutError when a participant's vector is missing (the round must restart without it).
    """
    missing = set(round_.participants) - set(masked)
    if missing:
        raise DropoutError(sorted(missing))
    extra = set(masked) - set(round_.participants)
    if extra:
        raise SecAggError(f"vectors from non-participants {sorted(extra)} are refused")
    sizes = {np.asarray(v).size for v in masked.values()}
    if len(sizes) != 1:
        raise SecAggError(f"masked vectors differ in length: {sorted(sizes)}")
    total = np.zeros(sizes.pop(), dtype=np.uint64)
    for supplier in round_.participants:
        vector = np.asarray(masked[supplier])
        if vector.dtype != np.uint64:
            raise SecAggError(f"{supplier!r} sent {vector.dtype} values; masked vectors are uint64")
        total = total + vector
    return total


def _signed_message(supplier: str, round_id: str, public_key: bytes) -> bytes:
    parts = [_DOMAIN, supplier.encode(), round_id.encode(), public_key]
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _mask_stream(secret: bytes, round_id: str, a: str, b: str, size: int) -> np.ndarray:
    low, high = sorted((a, b))
    info = b"|".join([_DOMAIN, low.encode(), high.encode()])
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=hashlib.sha256(round_id.encode()).digest(),
        info=info,
    ).derive(secret)
    encryptor = Cipher(algorithms.ChaCha20(key, b"\x00" * 16), mode=None).encryptor()
    stream = encryptor.update(b"\x00" * (8 * size))
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64)


def secure_sum(
    round_: SecAggRound,
    parties: Mapping[str, SecAggParty],
    vectors: Mapping[str, np.ndarray],
    fixed: FixedPoint,
    verify_keys: Mapping[str, ec.EllipticCurvePublicKey],
) -> np.ndarray:
    """One whole round run in one process (simulations, benchmarks): the decoded sum."""
    announcements = [parties[p].announce(round_) for p in round_.participants]
    masked = {
        p: parties[p].mask(round_, fixed.encode(vectors[p]), announcements, verify_keys)
        for p in round_.participants
    }
    return fixed.decode(unmask_sum(round_, masked))
