"""The models' shared contract, on synthetic data with a known answer, and the ranking metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recommend.ml import (
    MODELS,
    ALSModel,
    ContentModel,
    EASEModel,
    History,
    HybridConfig,
    HybridModel,
    ItemKNNModel,
    PopularityModel,
    RankedHybridModel,
    RankingMetrics,
    TrainSet,
    load_model,
)

N_ITEMS = 20


def two_groups(n_users: int = 60, seed: int = 0) -> TrainSet:
    """Users of group g consume 6 of group g's 10 items (checkerboard-like); one item per step."""
    rng = np.random.default_rng(seed)
    histories = []
    for u in range(n_users):
        group = u % 2
        items = rng.choice(10, size=6, replace=False) + 10 * group
        histories.append(History.from_events(items.tolist(), list(range(6))))
    vectors = np.zeros((N_ITEMS, 8), dtype=np.float32)
    vectors[:10, 0] = 1.0
    vectors[10:, 1] = 1.0
    return TrainSet(items=[f"i{i}" for i in range(N_ITEMS)], histories=histories, item_vectors=vectors)


def build(kind: str):
    return {
        "popularity": PopularityModel,
        "item_knn": lambda: ItemKNNModel(neighbours=10),
        "ease": lambda: EASEModel(l2=10.0),
        "als": lambda: ALSModel(factors=4, iterations=5),
        "content": ContentModel,
        "hybrid": lambda: HybridModel(HybridConfig(l2=10.0, w_basket=0.5)),
        "ranked_hybrid": lambda: RankedHybridModel(HybridConfig(l2=10.0), candidates=8),
    }[kind]()


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_model_scores_the_same_after_save_and_load(kind: str, tmp_path: Path):
    train = two_groups()
    model = build(kind).fit(train)
    histories = [History.from_events([0, 1, 2], [0, 1, 2]), History.from_events([15], [0])]
    before = model.score(histories)
    assert before.shape == (2, N_ITEMS)
    model.save(tmp_path / kind)
    again = load_model(tmp_path / kind)
    np.testing.assert_allclose(again.score(histories), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["item_knn", "ease", "als", "content", "hybrid", "ranked_hybrid"])
def test_personalised_models_recommend_the_customers_own_group(kind: str):
    model = build(kind).fit(two_groups())
    scores = model.score([History.from_events([11, 12, 13], [0, 1, 2])])[0]
    scores[[11, 12, 13]] = -np.inf
    top = np.argsort(-scores)[:5]
    assert all(i >= 10 for i in top), top


def test_history_steps_count_distinct_times_back_from_the_newest():
    h = History.from_events([5, 6, 7, 8], [30.0, 10.0, 30.0, 20.0])
    assert h.items.tolist() == [6, 8, 5, 7]
    assert h.steps.tolist() == [2, 1, 0, 0]
    assert h.weights(1.0)[2] == pytest.approx(1.0)


def test_hybrid_follows_the_newest_items_more_than_old_ones():
    # Two chains: 0->1->2 and 10->11->12; a history that ended in the second chain should lead to 12.
    histories = [History.from_events([0, 1, 2], [0, 1, 2]) for _ in range(20)]
    histories += [History.from_events([10, 11, 12], [0, 1, 2]) for _ in range(20)]
    train = TrainSet(items=[f"i{i}" for i in range(N_ITEMS)], histories=histories)
    model = HybridModel(HybridConfig(l2=5.0, w_trans=1.0, w_content=0.0, w_pop=0.0)).fit(train)
    scores = model.score([History.from_events([0, 11], [0, 1])])[0]
    assert scores[12] > scores[1]


def test_ranking_metrics_on_a_known_ranking():
    metrics = RankingMetrics(k=10, n_items=5)
    scores = np.array([0.1, 0.9, 0.8, 0.7, 0.0])
    metrics.add(scores, {2}, exclude=np.array([1]))  # 1 is excluded, so 2 ranks first
    metrics.add(scores, {4}, exclude=np.array([], dtype=np.int64))  # 4 ranks fifth
    result = metrics.result()
    assert result["hr@10"] == 1.0
    assert result["ndcg@10"] == pytest.approx((1.0 + 1 / np.log2(6)) / 2, abs=1e-4)
    assert result["mrr"] == pytest.approx((1.0 + 0.2) / 2, abs=1e-4)
    assert result["n"] == 2


def test_a_basket_target_counts_every_hit_and_its_ideal():
    metrics = RankingMetrics(k=2, n_items=4)
    metrics.add(np.array([0.9, 0.8, 0.7, 0.1]), {0, 3}, exclude=np.array([], dtype=np.int64))
    result = metrics.result()
    assert result["recall@2"] == 0.5
    assert result["ndcg@2"] == pytest.approx(1.0 / (1 + 1 / np.log2(3)), abs=1e-4)
