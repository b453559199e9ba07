"""Linkage tokens made at the supplier: identifiers leave only as keyed hashes.

- exact tokens: HMAC-SHA256 of a normalized identifier (`tok_<column>`, `tok_record`);
- a record-level Bloom filter (`bf_record`): each q-gram of each encoded field sets
  `bloom_hashes` bits chosen by keyed double hashing, so records with typos still share bits;
- blocking keys (`blk_<name>`): keyed hashes of coarse values (Soundex, year...) so the broker
  compares only records that share a block.

All three use different sub-keys of one linkage secret, which the suppliers share and the broker
never holds; without it no token of a known identifier can be recomputed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stat
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from fedsynth.prep.spec import BlockingKey, LinkageField, LinkageSpec, Normalization

SECRET_ENV = "FEDSYNTH_LINKAGE_SECRET"
SECRET_FILE_ENV = "FEDSYNTH_LINKAGE_SECRET_FILE"
MIN_SECRET_BYTES = 16
BLOOM_COLUMN = "bf_record"
RECORD_TOKEN = "tok_record"
_SEP = "\x1f"
_CHUNK = 16_384


class SecretError(ValueError):
    """The linkage secret is missing, too short or stored unsafely; the message says the fix."""


class LinkageSecret:
    """The key shared by suppliers; never printed, logged or serialized."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_SECRET_BYTES:
            raise SecretError(
                f"the linkage secret has {len(key)} bytes; use at least {MIN_SECRET_BYTES} "
                "(e.g. `head -c 32 /dev/urandom | base64 > linkage.key`)"
            )
        self._key = key

    def __repr__(self) -> str:
        return "LinkageSecret(<redacted>)"

    def __reduce__(self) -> None:
        raise TypeError("a LinkageSecret cannot be serialized")

    @classmethod
    def from_file(cls, path: str | Path) -> LinkageSecret:
        """Read the secret from a file that only its owner may read."""
        path = Path(path)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError as exc:
            raise SecretError(f"{path}: linkage secret file not found") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(
                f"{path}: the linkage secret file is readable by others; run `chmod 600 {path}`"
            )
        return cls(path.read_bytes().strip())

    @classmethod
    def from_env(cls) -> LinkageSecret:
        """The secret from $FEDSYNTH_LINKAGE_SECRET_FILE (a path) or $FEDSYNTH_LINKAGE_SECRET."""
        if os.environ.get(SECRET_FILE_ENV):
            return cls.from_file(os.environ[SECRET_FILE_ENV])
        if os.environ.get(SECRET_ENV):
            return cls(os.environ[SECRET_ENV].strip().encode("utf-8"))
        raise SecretError(
            f"no linkage secret: pass --secret-file, or set {SECRET_FILE_ENV} to a file path"
        )

    def subkey(self, purpose: str) -> bytes:
        """An independent key for one use (exact tokens, Bloom hashing, blocking)."""
        return hmac.new(self._key, b"fedsynth/linkage/v1/" + purpose.encode(), "sha256").digest()


_NORMALIZERS: dict[Normalization, Callable[[str], str]] = {
    Normalization.TRIM: str.strip,
    Normalization.LOWER: str.lower,
    Normalization.UPPER: str.upper,
    Normalization.STRIP_ACCENTS: lambda v: "".join(
        c for c in unicodedata.normalize("NFKD", v) if not unicodedata.combining(c)
    ),
    Normalization.LETTERS_ONLY: lambda v: "".join(c for c in v if c.isalpha() or c == " "),
    Normalization.DIGITS_ONLY: lambda v: re.sub(r"\D", "", v),
    Normalization.ALNUM_ONLY: lambda v: "".join(c for c in v if c.isalnum() or c == " "),
    Normalization.COLLAPSE_SPACES: lambda v: re.sub(r"\s+", " ", v),
    Normalization.REMOVE_SPACES: lambda v: re.sub(r"\s+", "", v),
}


def normalize(values: pd.Series, steps: list[Normalization]) -> pd.Series:
    """Normalized text of an identifier column; empty results become null.

    Every value is composed to Unicode NFC first, so one name typed as composed or decomposed
    characters (`José` either way) gives one token whatever the steps.
    """
    text = _as_text(values)

    def apply(value: str) -> str | None:
        value = unicodedata.normalize("NFC", value)
        for step in steps:
            value = _NORMALIZERS[step](value)
        return value.strip() or None

    return _map_unique(text, apply)


def exact_tokens(values: pd.Series, field: str, secret: LinkageSecret) -> pd.Series:
    """HMAC-SHA256 (hex) of each normalized value, keyed for exact tokens and bound to `field`."""
    key = secret.subkey("exact")
    return _map_unique(
        values,
        lambda v: hmac.new(key, (field + _SEP + v).encode("utf-8"), "sha256").hexdigest(),
    )


def record_tokens(parts: list[pd.Series], secret: LinkageSecret) -> pd.Series:
    """One HMAC over several normalized fields; null when any of them is null."""
    key = secret.subkey("record")
    frame = pd.concat(parts, axis=1)
    complete = frame.notna().all(axis=1)
    rows = frame[complete].astype(str).to_numpy().tolist()
    tokens = pd.Series(None, index=frame.index, dtype=object)
    tokens[complete] = [
        hmac.new(key, _SEP.join(r).encode("utf-8"), "sha256").hexdigest() for r in rows
    ]
    return tokens


def qgrams(value: str, q: int) -> list[str]:
    """The q-grams of `value`, padded so first and last letters count as much as the rest."""
    padded = "_" * (q - 1) + value + "_" * (q - 1) if q > 1 else value
    return [padded[i : i + q] for i in range(len(padded) - q + 1)]


class BloomEncoder:
    """Builds the record-level Bloom filters of a table's linkage fields."""

    def __init__(self, spec: LinkageSpec, secret: LinkageSecret) -> None:
        self.spec = spec
        self.length = spec.bloom.length
        self._key = secret.subkey("bloom")
        self._grams: dict[tuple[str, str, int], np.ndarray] = {}

    def positions(self, group: str, value: str, hashes: int) -> np.ndarray:
        """Bit positions set by `value`: `hashes` keyed double-hash positions per q-gram."""
        grams = [self._gram(group, g, hashes) for g in qgrams(value, self.spec.bloom.q)]
        return np.concatenate(grams) if grams else np.empty(0, np.int64)

    def _gram(self, group: str, gram: str, hashes: int) -> np.ndarray:
        key = (group, gram, hashes)
        if key not in self._grams:
            digest = hmac.new(self._key, (group + _SEP + gram).encode("utf-8"), "sha256").digest()
            h1 = int.from_bytes(digest[:8], "big")
            h2 = int.from_bytes(digest[8:16], "big") | 1
            self._grams[key] = np.array(
                [(h1 + i * h2) % self.length for i in range(hashes)], dtype=np.int64
            )
        return self._grams[key]

    def encode(self, fields: dict[str, pd.Series]) -> np.ndarray:
        """Packed Bloom filters, one row of `length / 8` bytes per record."""
        encoded = [f for f in self.spec.fields if f.bloom_hashes > 0]
        n = len(next(iter(fields.values()))) if fields else 0
        per_field = [self._field_positions(f, fields[f.column]) for f in encoded]
        packed = np.zeros((n, self.length // 8), dtype=np.uint8)
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            bits = np.zeros((stop - start, self.length), dtype=bool)
            for arrays in per_field:
                chunk = arrays[start:stop]
                lengths = np.fromiter((len(a) for a in chunk), dtype=np.int64, count=len(chunk))
                if lengths.sum():
                    rows = np.repeat(np.arange(stop - start), lengths)
                    bits[rows, np.concatenate(chunk)] = True
            packed[start:stop] = np.packbits(bits, axis=1)
        return packed

    def _field_positions(self, field: LinkageField, values: pd.Series) -> list[np.ndarray]:
        group = field.group or field.column
        cache: dict[str, np.ndarray] = {}
        empty = np.empty(0, np.int64)
        out = []
        for value in values.tolist():
            if value is None or (isinstance(value, float) and np.isnan(value)):
                out.append(empty)
                continue
            if value not in cache:
                cache[value] = self.positions(group, value, field.bloom_hashes)
            out.append(cache[value])
        return out


def bloom_to_text(packed: np.ndarray) -> pd.Series:
    """Base64 text of each packed Bloom filter (how it is stored in a table)."""
    return pd.Series([base64.b64encode(row.tobytes()).decode("ascii") for row in packed])


def bloom_from_text(text: pd.Series) -> np.ndarray:
    """Packed Bloom filters back from their base64 text; all must have one length."""
    raw = [base64.b64decode(v, validate=True) for v in text.tolist()]
    sizes = {len(r) for r in raw}
    if len(sizes) > 1:
        raise ValueError(f"Bloom filters of different lengths {sorted(sizes)} in one column")
    width = sizes.pop() if sizes else 0
    return np.frombuffer(b"".join(raw), dtype=np.uint8).reshape(len(raw), width)


def soundex(value: str) -> str | None:
    """American Soundex of the letters of `value` (None when it has no letters)."""
    letters = [c for c in value.upper() if "A" <= c <= "Z"]
    if not letters:
        return None
    codes = {c: d for d, group in _SOUNDEX_GROUPS.items() for c in group}
    out = [letters[0]]
    previous = codes.get(letters[0], "")
    for c in letters[1:]:
        code = codes.get(c, "")
        if code and code != previous:
            out.append(code)
        if c not in "HW":
            previous = code
    return ("".join(out) + "000")[:4]


_SOUNDEX_GROUPS = {"1": "BFPV", "2": "CGJKQSXZ", "3": "DT", "4": "L", "5": "MN", "6": "R"}
_TRANSFORMS: dict[str, Callable[[str], str | None]] = {
    "value": lambda v: v,
    "soundex": soundex,
    "prefix2": lambda v: v[:2],
    "prefix3": lambda v: v[:3],
    "year": lambda v: re.sub(r"\D", "", v)[:4] or None,
    "year_month": lambda v: re.sub(r"\D", "", v)[:6] or None,
}


def blocking_tokens(
    key: BlockingKey, fields: dict[str, pd.Series], secret: LinkageSecret
) -> pd.Series:
    """Keyed hash of a blocking key's parts (sorted when the key says so); null if a part is."""
    subkey = secret.subkey("blocking")
    parts = [_map_unique(fields[p.column], _TRANSFORMS[p.transform]) for p in key.parts]
    frame = pd.concat(parts, axis=1, ignore_index=True)
    complete = frame.notna().all(axis=1)
    rows = frame[complete].astype(str).to_numpy().tolist()
    texts = [_SEP.join(sorted(r) if key.sorted else r) for r in rows]
    tokens = pd.Series(None, index=frame.index, dtype=object)
    prefix = key.name + _SEP
    tokens[complete] = [
        hmac.new(subkey, (prefix + t).encode("utf-8"), hashlib.sha256).hexdigest()[:32]
        for t in texts
    ]
    return tokens


def tokenize(frame: pd.DataFrame, spec: LinkageSpec, secret: LinkageSecret) -> pd.DataFrame:
    """All token columns for `frame`'s linkage fields, in a stable order, same index."""
    fields = {f.column: normalize(frame[f.column], f.normalize) for f in spec.fields}
    out: dict[str, pd.Series] = {}
    for f in spec.fields:
        if f.exact:
            out[f"tok_{f.column}"] = exact_tokens(fields[f.column], f.column, secret)
    if spec.exact_key:
        out[RECORD_TOKEN] = record_tokens([fields[c] for c in spec.exact_key], secret)
    if any(f.bloom_hashes for f in spec.fields):
        packed = BloomEncoder(spec, secret).encode(fields)
        out[BLOOM_COLUMN] = bloom_to_text(packed).set_axis(frame.index)
    for key in spec.blocking:
        out[f"blk_{key.name}"] = blocking_tokens(key, fields, secret)
    return pd.DataFrame(out, index=frame.index)


def token_columns(spec: LinkageSpec) -> list[str]:
    """Names of the columns `tokenize` emits for `spec`, in order."""
    names = [f"tok_{f.column}" for f in spec.fields if f.exact]
    if spec.exact_key:
        names.append(RECORD_TOKEN)
    if any(f.bloom_hashes for f in spec.fields):
        names.append(BLOOM_COLUMN)
    return names + [f"blk_{k.name}" for k in spec.blocking]


def _as_text(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.dt.strftime("%Y-%m-%d").astype(object).where(values.notna(), None)
    return (
        values.astype(object).where(values.notna(), None).map(lambda v: v if v is None else str(v))
    )


def _map_unique(values: pd.Series, fn: Callable[[str], str | None]) -> pd.Series:
    present = values.notna().to_numpy()
    chosen = values.to_numpy(dtype=object)[present].tolist()
    mapping = {v: fn(v) for v in set(chosen)}
    out = np.full(len(values), None, dtype=object)
    out[present] = [mapping[v] for v in chosen]
    return pd.Series(out, index=values.index, dtype=object)
