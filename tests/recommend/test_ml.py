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
from recommend.sequential import SASRecConfig, SASRecModel, sequence, text_projection

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
        "sasrec": lambda: SASRecModel(SMALL_SASREC),
    }[kind]()


SMALL_SASREC = SASRecConfig(dim=16, layers=1, heads=2, max_len=8, dropout=0.2, lr=5e-3, batch=16, epochs=40)


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


@pytest.mark.parametrize("kind", ["item_knn", "ease", "als", "content", "hybrid", "ranked_hybrid", "sasrec"])
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


def test_sasrec_sequences_keep_each_item_at_its_newest_occurrence():
    h = History.from_events([3, 4, 3, 5], [1.0, 2.0, 3.0, 4.0])
    assert sequence(h).tolist() == [4, 3, 5]
    assert sequence(History.from_events([], [])).tolist() == []


def test_sasrec_item_embeddings_start_from_the_text_embeddings():
    train = two_groups()
    init = text_projection(train.item_vectors, N_ITEMS, 4, np.random.default_rng(0))
    same = np.corrcoef(init[0], init[1])[0, 1]
    across = np.corrcoef(init[0], init[15])[0, 1]
    assert same > 0.9 and across < 0.0
    untrained = SASRecModel(SASRecConfig(dim=4, layers=1, heads=1, max_len=8, epochs=0)).fit(train)
    emb = untrained.net.items.weight.detach().numpy()[1:]
    np.testing.assert_allclose(emb, init, rtol=1e-6)


def test_sasrec_learns_what_comes_next_in_a_sequence():
    """Customers walk stretches of the chain 0 -> 1 -> ... -> 9; after 2, 3, 4 the next item is 5."""
    rng = np.random.default_rng(0)
    histories = []
    for _ in range(60):
        start = int(rng.integers(0, 6))
        stop = int(rng.integers(start + 3, 11))
        histories.append(History.from_events(list(range(start, stop)), list(range(stop - start))))
    train = TrainSet(items=[f"i{i}" for i in range(N_ITEMS)], histories=histories)
    model = SASRecModel(SMALL_SASREC).fit(train)
    scores = model.score([History.from_events([2, 3, 4], [0, 1, 2])])[0]
    assert int(np.argmax(scores)) == 5


def test_hybrid_with_the_transformer_and_knn_round_trips(tmp_path: Path):
    config = HybridConfig(l2=10.0, knn=5, w_knn=0.5, seq=True, w_seq=0.5, seq_epochs=3, seq_dim=8)
    model = HybridModel(config).fit(two_groups())
    histories = [History.from_events([0, 1, 2], [0, 1, 2])]
    before = model.components(histories)
    assert {"seq", "knn"} <= set(before)
    model.save(tmp_path / "h")
    again = load_model(tmp_path / "h")
    np.testing.assert_allclose(again.score(histories), model.score(histories), rtol=1e-5, atol=1e-5)
