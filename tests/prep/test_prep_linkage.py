"""Linking two generated sources of 10,000 persons, and the linker's rules on small cases."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest

from fedsynth.prep.linker import (
    LinkageError,
    Linker,
    linked_table,
    person_ids_for,
    stacked_table,
)
from fedsynth.prep.population import two_sources
from fedsynth.prep.spec import LinkageSpec
from fedsynth.prep.tokens import LinkageSecret, tokenize

NAME_STEPS = ["strip_accents", "lower", "letters_only", "remove_spaces"]
SPEC = LinkageSpec.model_validate(
    {
        "fields": [
            {"column": "first_name", "bloom_hashes": 15, "group": "name", "normalize": NAME_STEPS},
            {"column": "middle_name", "bloom_hashes": 4, "group": "name", "normalize": NAME_STEPS},
            {"column": "last_name", "bloom_hashes": 15, "group": "name", "normalize": NAME_STEPS},
            {"column": "birth_date", "bloom_hashes": 25, "normalize": ["digits_only"]},
        ],
        "exact_key": ["first_name", "last_name", "birth_date"],
        "blocking": [
            {"name": "dob", "parts": [{"column": "birth_date"}]},
            {
                "name": "names",
                "sorted": True,
                "parts": [
                    {"column": "first_name", "transform": "soundex"},
                    {"column": "last_name", "transform": "soundex"},
                ],
            },
        ],
    }
)


def test_population_of_10000_links_with_high_recall_and_precision(
    secret: LinkageSecret,
) -> None:
    a, b = two_sources(10_000, overlap=0.5, seed=7)
    ta, tb = tokenize(a, SPEC, secret), tokenize(b, SPEC, secret)
    assert not {"first_name", "last_name", "person_id"} & set(ta.columns)
    result = Linker(threshold=0.8).link(ta, tb)
    pairs = result.pairs
    right = a["person_id"].to_numpy()[pairs["left"]] == b["person_id"].to_numpy()[pairs["right"]]
    truth = len(set(a["person_id"]) & set(b["person_id"]))
    precision, recall = right.mean(), right.sum() / truth
    assert recall >= 0.95, recall
    assert precision >= 0.99, precision
    report = result.report
    assert report.candidate_pairs < len(a) * len(b) / 1000
    assert report.matches == report.exact_matches + report.fuzzy_matches == len(pairs)
    assert report.unmatched_left == len(a) - len(pairs)
    assert pairs["left"].is_unique and pairs["right"].is_unique


def _tables(left_bits: list[list[int]], right_bits: list[list[int]], block: str = "k"):
    def frame(rows: list[list[int]]) -> pd.DataFrame:
        packed = np.zeros((len(rows), 8), dtype=np.uint8)
        for i, bits in enumerate(rows):
            for bit in bits:
                packed[i, bit // 8] |= 1 << (7 - bit % 8)
        return pd.DataFrame(
            {
                "bf_record": [base64.b64encode(r.tobytes()).decode() for r in packed],
                "blk_all": [block] * len(rows),
                "value": [f"v{i}" for i in range(len(rows))],
            }
        )

    return frame(left_bits), frame(right_bits)


def test_assignment_is_one_to_one_and_best_first() -> None:
    left, right = _tables([[1, 2, 3, 4], [1, 2, 3, 5]], [[1, 2, 3, 4]])
    result = Linker(threshold=0.7).link(left, right)
    assert result.pairs[["left", "right"]].values.tolist() == [[0, 0]]
    assert result.report.unmatched_left == 1
    assert result.report.ambiguous == 0


def test_near_tie_is_reported_as_ambiguous() -> None:
    left, right = _tables(
        [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], [list(range(1, 11)), list(range(1, 10))]
    )
    result = Linker(threshold=0.7, ambiguity_margin=0.1).link(left, right)
    assert result.report.matches == 1
    assert result.report.ambiguous == 1


def test_pairs_below_threshold_do_not_match() -> None:
    left, right = _tables([[1, 2, 3, 4]], [[1, 2, 30, 40]])
    assert Linker(threshold=0.8).link(left, right).report.matches == 0


def test_records_in_different_blocks_are_never_compared() -> None:
    left, _ = _tables([[1, 2, 3]], [[1, 2, 3]], block="x")
    _, right = _tables([[1, 2, 3]], [[1, 2, 3]], block="y")
    report = Linker().link(left, right).report
    assert report.candidate_pairs == 0 and report.matches == 0


def test_oversized_blocks_are_skipped_and_counted() -> None:
    left, right = _tables([[1, 2]] * 4, [[1, 2]] * 4)
    report = Linker(max_block_pairs=10).link(left, right).report
    assert report.skipped_blocks == 1 and report.candidate_pairs == 0


def test_exact_tokens_match_without_bloom_filters() -> None:
    left = pd.DataFrame({"tok_record": ["t1", "t2", "t2"], "x": [1, 2, 3]})
    right = pd.DataFrame({"tok_record": ["t2", "t1", None], "y": [7, 8, 9]})
    result = Linker().link(left, right)
    assert result.pairs[["left", "right"]].values.tolist() == [[0, 1]]
    assert result.report.exact_matches == 1


def test_table_with_no_rows_links_to_no_pairs() -> None:
    left, right = _tables([[1, 2, 3]], [[1, 2, 3]])
    for a, b in ((left, right.iloc[:0]), (left.iloc[:0], right), (left.iloc[:0], right.iloc[:0])):
        result = Linker().link(a, b)
        assert result.pairs.empty
        assert result.report.unmatched_left == len(a) and result.report.unmatched_right == len(b)


def test_tables_without_tokens_are_refused() -> None:
    with pytest.raises(LinkageError, match="prepare both sources"):
        Linker().link(pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [1]}))


def test_linked_table_joins_attributes_and_stacked_table_marks_persons() -> None:
    left, right = _tables([[1, 2, 3, 4], [9, 10, 11]], [[20, 21], [1, 2, 3, 4]])
    result = Linker(threshold=0.9).link(left, right)
    linked = linked_table(left, right, result.pairs, names=("a", "b"))
    assert list(linked.columns) == ["value_a", "value_b", "link_score", "link_method"]
    assert linked[["value_a", "value_b"]].values.tolist() == [["v0", "v1"]]
    ids = person_ids_for(len(left), len(right), result.pairs, ("a", "b"))
    stacked = stacked_table({"a": left, "b": right}, ids)
    assert list(stacked.columns) == ["source", "person_id", "value"]
    assert stacked["source"].tolist() == ["a", "a", "b", "b"]
    assert stacked["person_id"].tolist() == [0, 1, 2, 0]
