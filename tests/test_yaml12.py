"""Configuration documents read YAML 1.2 scalars: codes and words keep their text, exponent
numbers are numbers."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from fedsynth.yaml12 import Yaml12Dumper, load_yaml


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("NO", "NO"),
        ("yes", "yes"),
        ("true", True),
        ("0123", "0123"),
        ("10:30", "10:30"),
        ("1e-5", 1e-5),
        ("5e-1", 0.5),
        ("1.0e-6", 1e-6),
        ("-3", -3),
        ("0x1F", 31),
        ("2.5", 2.5),
    ],
)
def test_scalars_read_as_yaml_1_2_reads_them(text: str, value: object) -> None:
    assert load_yaml(f"v: {text}") == {"v": value}


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_any_decimal_integer_reads_as_itself(number: int) -> None:
    assert load_yaml(f"v: {number}") == {"v": number}


@given(st.from_regex(r"0[0-9]{1,9}", fullmatch=True))
def test_digits_with_a_leading_zero_keep_their_text(code: str) -> None:
    assert load_yaml(f"v: {code}") == {"v": code}


scalars = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)


@example(["\x85", "a\u2028b", "x\u2029"])
@given(st.lists(scalars, max_size=8))
def test_what_the_dumper_writes_the_loader_reads_back_unchanged(values: list[object]) -> None:
    """A NEL (\\x85) was written single-quoted and read back as a space."""
    text = yaml.dump({"v": values}, Dumper=Yaml12Dumper, allow_unicode=True)
    assert load_yaml(text) == {"v": values}


@pytest.mark.parametrize(
    "text", ["00501", "0123", "10:30", "yes", "NO", "off", "1_000", "0x1F", "1e5", ".5", "~", ""]
)
def test_strings_the_dumper_writes_stay_text_for_a_yaml_1_1_reader_too(text: str) -> None:
    written = yaml.dump({"domain": [text]}, Dumper=Yaml12Dumper)
    assert yaml.safe_load(written) == {"domain": [text]}, written
    assert load_yaml(written) == {"domain": [text]}


@given(st.lists(st.text(alphabet="0123456789:._-+eExXyesnoYESNO", max_size=8), max_size=5))
def test_any_string_the_dumper_writes_reads_back_as_text_in_both_readers(texts: list[str]) -> None:
    written = yaml.dump(texts, Dumper=Yaml12Dumper)
    assert yaml.safe_load(written) == texts and load_yaml(written) == texts
