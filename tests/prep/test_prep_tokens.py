"""Linkage tokens: keyed, unrepeatable without the secret, tolerant of typos in Bloom form."""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fedsynth.prep.linker import dice
from fedsynth.prep.population import FEMALE_NAMES, MALE_NAMES
from fedsynth.prep.spec import LinkageSpec, Normalization
from fedsynth.prep.tokens import (
    SECRET_ENV,
    SECRET_FILE_ENV,
    BloomEncoder,
    LinkageSecret,
    SecretError,
    bloom_from_text,
    exact_tokens,
    normalize,
    soundex,
    tokenize,
)

SPEC = LinkageSpec.model_validate(
    {
        "fields": [
            {"column": "first_name", "exact": True, "bloom_hashes": 15, "group": "name"},
            {"column": "last_name", "exact": True, "bloom_hashes": 15, "group": "name"},
            {"column": "birth_date", "bloom_hashes": 25, "normalize": ["digits_only"]},
        ],
        "exact_key": ["first_name", "last_name", "birth_date"],
        "blocking": [{"name": "dob", "parts": [{"column": "birth_date"}]}],
    }
)
PEOPLE = pd.DataFrame(
    {
        "first_name": ["Anna", "Jonathan"],
        "last_name": ["Smith", "Berg"],
        "birth_date": ["1980-05-12", "1975-01-30"],
    }
)


def test_tokens_replace_identifiers_and_hold_no_clear_text(secret: LinkageSecret) -> None:
    tokens = tokenize(PEOPLE, SPEC, secret)
    assert list(tokens.columns) == [
        "tok_first_name",
        "tok_last_name",
        "tok_record",
        "bf_record",
        "blk_dob",
    ]
    text = tokens.to_csv().lower()
    for value in ["anna", "smith", "jonathan", "berg", "1980", "19800512"]:
        assert value not in text


def test_dictionary_attack_without_the_secret_finds_no_token(secret: LinkageSecret) -> None:
    target = set(tokenize(PEOPLE, SPEC, secret)["tok_first_name"])
    names = [n.lower() for n in (*FEMALE_NAMES, *MALE_NAMES, "anna", "jonathan")]
    guessed_keys = [b"", b"secret", b"fedsynth", b"0" * 32, b"linkage", b"test"]
    guesses = set()
    for name in names:
        for payload in (name, "first_name\x1f" + name):
            data = payload.encode()
            guesses.add(hashlib.sha256(data).hexdigest())
            guesses |= {hmac.new(k, data, "sha256").hexdigest() for k in guessed_keys}
            guesses.add(hmac.new(b"fedsynth/linkage/v1/exact", data, "sha256").hexdigest())
    attacker = LinkageSecret(b"attacker-guess-0123456789abcdef")
    guesses |= set(
        tokenize(
            pd.DataFrame({"first_name": names, "last_name": "x", "birth_date": "1"}), SPEC, attacker
        )["tok_first_name"]
    )
    assert not target & guesses


def test_bloom_filters_under_a_wrong_secret_do_not_resemble_the_real_ones(
    secret: LinkageSecret,
) -> None:
    real = bloom_from_text(tokenize(PEOPLE, SPEC, secret)["bf_record"])
    forged = bloom_from_text(
        tokenize(PEOPLE, SPEC, LinkageSecret(b"another-secret-0123456789abcd"))["bf_record"]
    )
    scores = dice(real, forged, np.array([[0, 0], [1, 1]]))
    assert scores.max() < 0.6


def test_one_identifier_under_two_secrets_gives_unrelated_tokens(secret: LinkageSecret) -> None:
    other = LinkageSecret(b"a-completely-different-secret!!")
    a, b = tokenize(PEOPLE, SPEC, secret), tokenize(PEOPLE, SPEC, other)
    for column in ("tok_first_name", "tok_record", "blk_dob"):
        assert not set(a[column]) & set(b[column])
    x, y = int(a["tok_first_name"][0], 16), int(b["tok_first_name"][0], 16)
    assert 80 < bin(x ^ y).count("1") < 176


def test_same_secret_gives_the_same_tokens_in_every_source(secret: LinkageSecret) -> None:
    again = LinkageSecret(b"test-secret-0123456789abcdef-xyz")
    pd.testing.assert_frame_equal(tokenize(PEOPLE, SPEC, secret), tokenize(PEOPLE, SPEC, again))


def test_normalization_makes_spelling_variants_one_token(secret: LinkageSecret) -> None:
    variants = pd.DataFrame(
        {
            "first_name": ["  ANNA ", "Änna", "anna"],
            "last_name": ["Smith", "smith", "SMÍTH"],
            "birth_date": ["1980-05-12", "12.05.1980x", "1980/05/12"],
        }
    )
    spec = SPEC.model_copy(update={"exact_key": ["first_name", "last_name"]})
    tokens = tokenize(variants, spec, secret)
    assert tokens["tok_first_name"].nunique() == 1
    assert tokens["tok_record"].nunique() == 1


def test_composed_and_decomposed_name_give_one_token_without_strip_accents(
    secret: LinkageSecret,
) -> None:
    names = [unicodedata.normalize(form, "José") for form in ("NFC", "NFD")]
    assert names[0] != names[1]
    spec = LinkageSpec.model_validate(
        {
            "fields": [
                {"column": "first_name", "exact": True, "bloom_hashes": 10, "normalize": ["lower"]}
            ],
            "exact_key": ["first_name"],
            "blocking": [{"name": "first", "parts": [{"column": "first_name"}]}],
        }
    )
    tokens = tokenize(pd.DataFrame({"first_name": names}), spec, secret)
    for column in tokens.columns:
        assert tokens[column].nunique() == 1, column


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12), st.lists(st.sampled_from(list(Normalization)), max_size=4))
@example("José", [])
@example("Ångström", [Normalization.LOWER, Normalization.TRIM])
def test_nfc_and_nfd_forms_of_any_text_give_the_same_token(
    text: str, steps: list[Normalization]
) -> None:
    forms = pd.Series([unicodedata.normalize(f, text) for f in ("NFC", "NFD")], dtype=object)
    tokens = exact_tokens(normalize(forms, steps), "name", LinkageSecret(b"nfc-secret-0123456789"))
    assert tokens[0] == tokens[1]


def test_typo_keeps_bloom_filters_similar(secret: LinkageSecret) -> None:
    pair = pd.DataFrame(
        {
            "first_name": ["Jonathan", "Jonahtan", "Maria"],
            "last_name": ["Berg", "Berg", "Lopez"],
            "birth_date": ["1975-01-30", "1975-01-30", "1990-11-02"],
        }
    )
    packed = bloom_from_text(tokenize(pair, SPEC, secret)["bf_record"])
    similar, unrelated = dice(packed, packed, np.array([[0, 1], [0, 2]]))
    assert similar > 0.85
    assert unrelated < 0.6


def test_swapped_name_parts_keep_the_same_bloom_filter(secret: LinkageSecret) -> None:
    swapped = pd.DataFrame(
        {
            "first_name": ["Anna", "Smith"],
            "last_name": ["Smith", "Anna"],
            "birth_date": ["1980-05-12"] * 2,
        }
    )
    packed = bloom_from_text(tokenize(swapped, SPEC, secret)["bf_record"])
    assert dice(packed, packed, np.array([[0, 1]]))[0] == 1.0


def test_secret_repr_and_pickling_reveal_nothing() -> None:
    key = LinkageSecret(b"super-secret-value-0123456789")
    assert "super" not in repr(key) and "super" not in str(key)
    with pytest.raises(TypeError):
        key.__reduce__()


def test_short_secret_is_refused() -> None:
    with pytest.raises(SecretError, match="at least 16"):
        LinkageSecret(b"short")


def test_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "linkage.key"
    path.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    path.chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        LinkageSecret.from_file(path)
    path.chmod(0o600)
    LinkageSecret.from_file(path)


def test_secret_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_FILE_ENV, raising=False)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(SecretError, match="--secret-file"):
        LinkageSecret.from_env()
    path = tmp_path / "k"
    path.write_bytes(b"0123456789abcdef0123456789abcdef")
    os.chmod(path, 0o600)
    monkeypatch.setenv(SECRET_FILE_ENV, str(path))
    from_file = LinkageSecret.from_env()
    monkeypatch.delenv(SECRET_FILE_ENV)
    monkeypatch.setenv(SECRET_ENV, "0123456789abcdef0123456789abcdef")
    assert from_file.subkey("x") == LinkageSecret.from_env().subkey("x")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Robert", "R163"),
        ("Rupert", "R163"),
        ("Ashcraft", "A261"),
        ("Tymczak", "T522"),
        ("Pfister", "P236"),
        ("Lee", "L000"),
        ("123", None),
    ],
)
def test_soundex_matches_the_standard_codes(name: str, code: str | None) -> None:
    assert soundex(name) == code


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=5))
def test_normalize_is_idempotent(values: list[str]) -> None:
    steps = SPEC.fields[0].normalize
    once = normalize(pd.Series(values, dtype=object), steps)
    twice = normalize(once, steps)
    assert once.tolist() == twice.tolist()


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="abcdefghij ", min_size=1, max_size=15))
def test_bloom_positions_are_in_range_and_deterministic(value: str) -> None:
    encoder = BloomEncoder(SPEC, LinkageSecret(b"property-secret-0123456789ab"))
    first = encoder.positions("name", value, 7)
    assert ((first >= 0) & (first < SPEC.bloom.length)).all()
    assert (first == encoder.positions("name", value, 7)).all()
