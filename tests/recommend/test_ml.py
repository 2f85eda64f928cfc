"""The models' shared contract, on synthetic data with a known answer, and the ranking metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recommend.evaluation import RankingMetrics
from recommend.ml import (
    MODELS,
    ALSModel,
    BlockWeights,
    ContentModel,
    EASEModel,
    History,
    HybridConfig,
    HybridModel,
    ItemKNNModel,
    PopularityModel,
    RankedHybridModel,
    TrainSet,
    build_train_set,
    ease_weights,
    item_blocks,
    load_model,
    recent_popularity,
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
        "ranked_hybrid": lambda: RankedHybridModel(HybridConfig(l2=10.0, candidates=8, bags=2)),
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


def dense_ease(x: np.ndarray, l2: float) -> np.ndarray:
    """The textbook EASE over the whole catalogue (what the blocks must equal)."""
    gram = x.T @ x + l2 * np.eye(x.shape[1])
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_blocks_equal_dense_ease_over_the_whole_catalogue():
    rng = np.random.default_rng(3)
    x = np.zeros((40, 30), dtype=np.float32)
    x[:20, :12] = rng.random((20, 12)) < 0.4  # two shops that share no customer ...
    x[20:, 12:25] = rng.random((20, 13)) < 0.4  # ... and five products nobody bought
    weights = ease_weights(sp.csr_matrix(x), l2=5.0)
    assert sorted(len(items) for items, _ in weights.blocks) == [25]  # packed into one block; 25..29 left out
    dense = np.vstack([weights.row(i) for i in range(30)])
    np.testing.assert_allclose(dense, dense_ease(x, 5.0), atol=1e-4)
    h = sp.csr_matrix(x[:3])
    np.testing.assert_allclose(weights.left_multiply(h), x[:3] @ dense_ease(x, 5.0), atol=1e-4)
    rows, cols = np.array([0, 13, 29]), np.array([1, 2, 14, 28])
    np.testing.assert_allclose(weights.take(rows, cols), dense_ease(x, 5.0)[np.ix_(rows, cols)], atol=1e-4)


def test_pruned_ease_keeps_each_rows_largest_weights_and_survives_a_save(tmp_path):
    rng = np.random.default_rng(5)
    x = sp.csr_matrix((rng.random((60, 40)) < 0.3).astype(np.float32))
    dense = ease_weights(x, l2=5.0)
    pruned = ease_weights(x, l2=5.0, keep=6)
    assert pruned.nbytes() < dense.nbytes() / 2
    for i in range(40):
        full, kept = dense.row(i), pruned.row(i)
        assert np.count_nonzero(kept) <= 6
        np.testing.assert_allclose(kept[kept != 0], full[kept != 0], atol=1e-6)  # kept weights are unchanged ...
        assert np.abs(full[kept == 0]).max() <= np.abs(kept[kept != 0]).min() + 1e-6  # ... and the largest
    h = x[:5]
    np.testing.assert_allclose(pruned.left_multiply(h), h @ np.vstack([pruned.row(i) for i in range(40)]), atol=1e-5)
    rows, cols = np.array([0, 7, 39]), np.array([1, 2, 30])
    np.testing.assert_allclose(pruned.take(rows, cols), np.vstack([pruned.row(i) for i in rows])[:, cols])
    loaded = BlockWeights.from_arrays("ease", pruned.arrays("ease"))
    np.testing.assert_allclose(loaded.left_multiply(h), pruned.left_multiply(h))
    assert np.array_equal(ease_weights(x, l2=5.0, keep=40).row(3), dense.row(3))  # keep >= block: dense


def test_large_components_get_their_own_blocks_and_a_cap():
    x = sp.csr_matrix(np.kron(np.eye(3), np.ones((4, 3000))).astype(np.float32))  # three 3,000-item shops
    blocks = item_blocks(x, max_block=2500)
    assert [len(b) for b in blocks] == [2500, 2500, 2500]


def test_train_sets_are_the_same_whatever_order_the_events_come_in():
    events = [("c2", "b", 5.0), ("c1", "a", 1.0), ("c1", "c", 1.0), ("c2", "a", 3.0), ("c1", "b", 2.0)]
    baskets = [["c", "a"], ["b", "c"]]
    first, index = build_train_set(events, baskets)
    again, _ = build_train_set(reversed(events), reversed(baskets))
    assert first.items == again.items == ["a", "b", "c"] and first.customers == ["c1", "c2"]
    for one, two in zip(first.histories, again.histories):
        assert one.items.tolist() == two.items.tolist() and one.steps.tolist() == two.steps.tolist()
    assert [b.tolist() for b in first.extra_baskets] == [b.tolist() for b in again.extra_baskets] == [[0, 2], [1, 2]]
    assert index == {"a": 0, "b": 1, "c": 2}


def test_a_history_is_cut_to_its_newest_whole_steps():
    h = History.from_events([1, 2, 3, 4, 5, 6], [1.0, 2.0, 2.0, 3.0, 3.0, 3.0])
    assert sorted(h.newest(4).items.tolist()) == [4, 5, 6]  # the step at 2.0 does not fit whole
    assert sorted(h.newest(5).items.tolist()) == [2, 3, 4, 5, 6]
    assert h.newest(2).items.tolist() == [4, 5, 6]  # the newest step is kept whole
    assert h.newest(10) is h


def test_recent_popularity_uses_each_parts_own_clock():
    """Two shops imported together: one's data ends in 2011, the other's in 2018."""
    day, y2011, y2018 = 86400.0, 1.3e9, 1.5e9
    events = [(f"or{c}", "or-hit", y2011 - day) for c in range(3)] + [("or9", "or-old", y2011 - 300 * day)]
    events += [("or9", "or-hit", y2011 - 300 * day)]
    events += [(f"ml{c}", "ml-hit", y2018 - day) for c in range(2)] + [("ml0", "ml-old", y2018 - 300 * day)]
    train, index = build_train_set(events)
    counts = recent_popularity(train, days=30)
    assert counts[index["or-hit"]] == 3 and counts[index["ml-hit"]] == 2
    assert counts[index["or-old"]] == 0 and counts[index["ml-old"]] == 0


def test_a_ranked_model_trained_on_one_step_histories_falls_back_to_its_blend():
    train = TrainSet(items=["a", "b", "c"], histories=[History.from_events([0, 1], [0, 0])] * 5)
    model = RankedHybridModel(HybridConfig(l2=1.0, candidates=3)).fit(train)
    assert model.boosters == []
    assert model.score([History.from_events([0], [0])]).shape == (1, 3)
