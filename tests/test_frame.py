"""Categorical values become the text a domain lists, the same through the fast and slow path."""

from __future__ import annotations

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from fedsynth.frame import category_text, category_texts

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from([1.0, 2.5, -3.0]), st.text()
)


@given(st.lists(VALUES, max_size=30))
def test_every_value_becomes_its_domain_text_and_missing_stays_missing(values: list) -> None:
    out = category_texts(pd.Series(values, dtype=object)).tolist()
    expected = [None if v is None else category_text(v) for v in values]
    assert [None if pd.isna(o) else o for o in out] == expected


def test_numbers_and_flags_read_as_their_domain_text() -> None:
    out = category_texts(pd.Series([1.0, True, 2, "x", None], dtype=object)).tolist()
    assert out[:4] == ["1", "true", "2", "x"] and pd.isna(out[4])
