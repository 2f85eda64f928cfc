"""The shared ranking metrics against answers worked out by hand, and NDCG against scikit-learn's."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from backbone.metrics import (
    binary_ndcg_at_k,
    dcg,
    gain,
    hit_rate_at_k,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
    relevant_items,
)

JUDGED = {"a": 3.0, "b": 2.0, "c": 1.0}


def test_dcg_discounts_by_log2_of_rank_plus_one():
    # 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.2619 + 0.5
    assert dcg([3.0, 2.0, 1.0]) == pytest.approx(4.76186, abs=1e-5)


def test_ndcg_of_the_ideal_ranking_is_one():
    assert ndcg_at_k(["a", "b", "c"], JUDGED, k=10) == pytest.approx(1.0)


def test_gain_is_two_to_the_relevance_minus_one_minus_one():
    assert [gain(r) for r in (0.0, 1.0, 2.0, 3.0)] == [0.0, 0.0, 1.0, 3.0]
    assert gain(2.5) == pytest.approx(2**1.5 - 1)


def test_ndcg_uses_graded_gains_and_gives_unjudged_items_nothing():
    # gains a 3, b 1, c 0. DCG = 1/1 + 0/log2(3) + 3/log2(4) = 2.5; ideal = 3 + 1/log2(3) = 3.63093
    assert ndcg_at_k(["b", "unjudged", "a"], JUDGED, k=10) == pytest.approx(2.5 / 3.63093, abs=1e-5)


def test_ndcg_only_looks_at_the_top_k():
    # top 1: DCG = gain(2) = 1; ideal top 1 = gain(3) = 3
    assert ndcg_at_k(["b", "a", "c"], JUDGED, k=1) == pytest.approx(1 / 3)


def test_ndcg_is_zero_when_only_irrelevant_products_were_judged():
    assert ndcg_at_k(["c"], {"c": 1.0}) == 0.0


def test_ndcg_is_zero_for_an_empty_ranking_or_no_judgements():
    assert ndcg_at_k([], JUDGED) == 0.0
    assert ndcg_at_k(["a"], {}) == 0.0


def test_recall_counts_relevant_items_found_in_the_top_k():
    assert recall_at_k(["a", "x", "y"], {"a", "b"}, k=100) == 0.5
    assert recall_at_k(["x", "a", "b"], {"a", "b"}, k=2) == 0.5
    assert recall_at_k(["x", "a"], {"a"}, k=1) == 0.0
    assert recall_at_k(["a"], set(), k=100) == 0.0


def test_reciprocal_rank_is_one_over_the_first_relevant_rank():
    assert reciprocal_rank(["x", "y", "a", "b"], {"a", "b"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["b"], {"a", "b"}) == 1.0
    assert reciprocal_rank(["x", "y"], {"a"}) == 0.0
    assert reciprocal_rank(["x", "a"], {"a"}, k=1) == 0.0


def test_relevant_items_include_the_threshold():
    assert relevant_items(JUDGED, 2.0) == {"a", "b"}
    assert relevant_items({"a": 1.67}, 2.0) == set()


def test_ndcg_matches_a_direct_formula_on_a_longer_ranking():
    judged = {"p1": 2.33, "p2": 3.0, "p3": 1.0, "p4": 2.67}
    ranking = ["p3", "p1", "zz", "p2"]
    g = {name: 2 ** (relevance - 1) - 1 for name, relevance in judged.items()}  # p3 (relevance 1) gains 0
    actual = g["p3"] / math.log2(2) + g["p1"] / math.log2(3) + g["p2"] / math.log2(5)
    ideal = g["p2"] / math.log2(2) + g["p4"] / math.log2(3) + g["p1"] / math.log2(4)
    assert ndcg_at_k(ranking, judged, k=10) == pytest.approx(actual / ideal)


@pytest.mark.parametrize("k", [1, 3, 5, 10, 40])
def test_ndcg_equals_sklearn_ndcg_score_given_the_gains_as_linear_relevance(k):
    # The definitions coincide when the ranking holds every judged product and no two scores tie:
    # scikit-learn gains y_true linearly, so its y_true is our gain 2^(relevance-1) - 1 of each item.
    rng = random.Random(3)
    items = [f"p{i}" for i in range(30)]
    judged = {item: rng.choice([1.0, 1.33, 1.67, 2.0, 2.33, 2.67, 3.0]) for item in rng.sample(items, 15)}
    ranking = rng.sample(items, len(items))
    y_true = [[gain(judged.get(item, 0.0)) for item in ranking]]
    y_score = [list(range(len(ranking), 0, -1))]  # ranking order, no ties
    assert ndcg_at_k(ranking, judged, k=k) == pytest.approx(ndcg_score(y_true, y_score, k=k), abs=1e-12)


def test_binary_ndcg_equals_sklearn_and_graded_ndcg_at_relevance_two():
    ranking, relevant = ["x", "a", "y", "z", "b", "w"], {"a", "b"}
    y_true = [[1.0 if item in relevant else 0.0 for item in ranking]]
    y_score = [np.arange(len(ranking), 0, -1)]
    for k in (1, 2, 5, 10):
        expected = ndcg_score(y_true, y_score, k=k)
        assert binary_ndcg_at_k(ranking, relevant, k=k) == pytest.approx(expected, abs=1e-12)
        assert binary_ndcg_at_k(ranking, relevant, k=k) == ndcg_at_k(ranking, dict.fromkeys(relevant, 2.0), k=k)


def test_binary_ndcg_and_recall_count_relevant_items_no_ranking_holds():
    # "a" found at rank 2; one more relevant item could not be ranked: ideal = 2 hits at the top
    assert binary_ndcg_at_k(["x", "a"], {"a"}, k=10, n_relevant=2) == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )
    assert recall_at_k(["x", "a"], {"a"}, k=10, n_relevant=2) == 0.5
    assert binary_ndcg_at_k(["x"], set(), k=10) == 0.0


def test_hit_rate_is_one_when_a_relevant_item_is_in_the_top_k():
    assert hit_rate_at_k(["x", "a"], {"a"}, k=2) == 1.0
    assert hit_rate_at_k(["x", "a"], {"a"}, k=1) == 0.0
    assert hit_rate_at_k([], {"a"}) == 0.0
