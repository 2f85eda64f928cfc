"""The search ranker's pure-Python parts: correction, typos, features, lambdarank, the contrastive task."""

from __future__ import annotations

import random

import numpy as np

from backbone.metrics import ndcg_at_k
from search import ml


def test_corrector_fixes_one_edit_typos_with_the_most_frequent_word():
    corrector = ml.QueryCorrector({"screws": 40, "screen": 3, "wood": 10, "deck": 5})
    assert corrector.correct("Wood scerws") == "wood screws"  # transposition
    assert corrector.correct("dek screw") == "dek screws"  # 'dek' is too short to touch; 'screw' -> 'screws'
    assert corrector.correct("screen 2x4") == "screen 2x4"  # known words and numbers stay


def test_typos_are_one_edit_in_a_long_word_and_seeded():
    queries = ["deck screws", "drill", "ab cd", "stainless steel sink"]
    first = [ml.add_typo(q, random.Random(3)) for q in queries]
    assert first == [ml.add_typo(q, random.Random(3)) for q in queries]
    assert first[2] == "ab cd"  # no word of 5+ letters
    for original, typo in zip(queries, first, strict=True):
        changed = [(a, b) for a, b in zip(original.split(), typo.split(), strict=True) if a != b]
        assert len(changed) <= 1
        for a, b in changed:
            assert len(a) >= 5 and ml.edits1(a) >= {b} or b in ml.edits1(a)


def test_features_reward_matching_the_query():
    stats = ml.LexiconStats.from_lexemes([["deck", "screw"], ["wood", "screw"], ["garden", "hose"]])
    candidates = [
        ml.Candidate(key=1, title="Deck screws", lexemes=["deck", "screw"], cosine=0.9, ranks={"lexical": 1}),
        ml.Candidate(key=2, title="Garden hose", lexemes=["garden", "hose"], cosine=0.1, ranks={"dense": 5}),
    ]
    rows = ml.candidate_features("deck screws", ["deck", "screw"], candidates, stats)
    assert rows.shape == (2, len(ml.FEATURES))
    column = {name: i for i, name in enumerate(ml.FEATURES)}
    assert rows[0, column["bm25"]] > rows[1, column["bm25"]] == 0
    assert rows[0, column["coverage"]] == 1.0 and rows[1, column["lexical_rank"]] == ml.MISSING_RANK


def test_ranker_learns_a_known_ordering_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    features, relevances = [], []
    for _ in range(120):
        x = rng.normal(size=(20, len(ml.FEATURES))).astype(np.float32)
        features.append(x)
        relevances.append(np.clip(np.round(x[:, 0] + 2), 1, 3))  # relevance 1-3 follows the first feature
    ranker = ml.Ranker.fit(features[:100], relevances[:100], features[100:], relevances[100:], rounds=50)
    ndcgs = []
    for x, y in zip(features[100:], relevances[100:], strict=True):
        ranking = [str(i) for i in np.argsort(-ranker.predict(x))]
        ndcgs.append(ndcg_at_k(ranking, {str(i): float(r) for i, r in enumerate(y)}, 10))
    assert np.mean(ndcgs) > 0.9
    scores = ranker.predict(features[110])
    ranker.save(tmp_path / "r")
    again = ml.Ranker.load(tmp_path / "r")
    assert np.allclose(again.predict(features[110]), scores)


def test_contrastive_task_loss_falls_on_a_tiny_encoder(tiny_model_dir):
    import torch

    from backbone.encoder import Encoder
    from backbone.multitask import MultiTaskTrainer, TrainingConfig

    pairs = [ml.RelevancePair(q, p, (n,)) for q, p, n in [
        ("cordless drill", "DeWalt 18V cordless drill driver", "garden hose 50 ft"),
        ("garden hose", "Flexzilla garden hose 50 ft", "claw hammer"),
        ("claw hammer", "Stanley 16 oz claw hammer", "ceiling fan"),
        ("ceiling fan", "Hunter ceiling fan with light", "deck screws"),
    ]] * 4  # fmt: skip
    validation = [("garden hose", {"Flexzilla garden hose 50 ft": 3.0, "claw hammer": 1.0})]
    task = ml.SearchContrastiveTask(pairs, validation)
    encoder = Encoder.load(tiny_model_dir, device="cpu", max_length=16)
    head = task.build_head(encoder.dim)
    batch = pairs[:4]
    before = float(task.loss(encoder, head, batch).detach())
    assert np.isfinite(before)
    torch.manual_seed(0)
    result = MultiTaskTrainer(encoder, [task], TrainingConfig(epochs=3, batch_size=4, lr=1e-3, baselines=True)).fit()
    assert float(task.loss(encoder, head, batch).detach()) < before or result.metrics["search"]["judged_ndcg@10"] == 1.0
    assert set(result.baselines["search"]["untuned"]) == {"judged_ndcg@10", "validation_queries"}
