"""The pCTR model on synthetic data with a known answer, its calibration, persistence and metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ads.ml import CtrConfig, CtrData, CtrModel, Platt, bootstrap_auc, ctr_metrics, fit_hashed_logistic

FIELDS = [{"name": "a"}, {"name": "b"}, {"name": "noise"}, {"name": "tags", "kind": "bag", "max_len": 3}]


def xor_data(n: int, seed: int, text: bool = False) -> CtrData:
    """Click when a and b share parity (a pure interaction: no single field predicts it)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 10, n), rng.integers(0, 10, n)
    signal = (a % 2) == (b % 2)
    text_vectors = np.random.default_rng(99).normal(size=(2, 384)).astype(np.float32)  # the same two texts everywhere
    text_vectors /= np.linalg.norm(text_vectors, axis=1, keepdims=True)  # unit length, like the backbone's
    text_ids = rng.integers(0, 2, n)
    if text:  # the text decides half of the cases
        signal = np.where(rng.random(n) < 0.5, signal, text_ids == 1)
    labels = (rng.random(n) < np.where(signal, 0.8, 0.1)).astype(np.float64)
    rows = [
        {"a": str(x), "b": str(y), "noise": str(rng.integers(0, 50)), "tags": [f"t{rng.integers(0, 5)}"]}
        for x, y in zip(a, b)
    ]
    return CtrData(rows=rows, labels=labels, text_ids=[text_ids], text_vectors=[text_vectors])


def config(text_slots: int = 0) -> CtrConfig:
    return CtrConfig(fields=FIELDS, text_slots=text_slots, max_epochs=6, batch_size=256, lr=5e-3, patience=2)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_deepfm_learns_a_field_interaction_that_logistic_regression_cannot():
    train, val, test = xor_data(6000, 1), xor_data(1500, 2), xor_data(2000, 3)
    specs = CtrModel(config()).specs

    model = CtrModel(config()).fit(train, val)
    logistic = fit_hashed_logistic(train, val, specs)

    assert ctr_metrics(test.labels, model.predict(test))["auc"] > 0.8
    assert ctr_metrics(test.labels, logistic(test))["auc"] < 0.6


def test_text_embeddings_add_what_the_fields_lack():
    train, val, test = xor_data(6000, 1, text=True), xor_data(1500, 2, text=True), xor_data(2000, 3, text=True)

    with_text = CtrModel(config(text_slots=1)).fit(train, val)
    without = CtrModel(config(text_slots=0)).fit(train, val)

    gain = (
        ctr_metrics(test.labels, with_text.predict(test))["auc"]
        - ctr_metrics(test.labels, without.predict(test))["auc"]
    )
    assert gain > 0.02


def test_platt_scaling_calibrates_shifted_scores():
    rng = np.random.default_rng(0)
    labels = (rng.random(5000) < 0.2).astype(float)
    logits = np.where(labels == 1, 1.0, -1.0) + rng.normal(size=5000) + 3.0  # far too confident of clicks

    platt = Platt.fit(logits, labels)

    assert ctr_metrics(labels, 1 / (1 + np.exp(-logits)))["calibration_ratio"] > 3
    assert abs(ctr_metrics(labels, platt(logits))["calibration_ratio"] - 1) < 0.05


def test_saved_model_predicts_the_same_after_loading(tmp_path):
    train, val = xor_data(2000, 1, text=True), xor_data(500, 2, text=True)
    model = CtrModel(config(text_slots=1)).fit(train, val)

    model.save(tmp_path / "v1", {"auc": 0.5})
    loaded = CtrModel.load(tmp_path / "v1")

    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == ["config.json", "metrics.json", "weights.safetensors"]
    np.testing.assert_allclose(loaded.predict(val), model.predict(val), rtol=1e-5)


def test_unseen_values_map_to_the_unknown_slot():
    train, val = xor_data(1000, 1), xor_data(300, 2)
    model = CtrModel(config()).fit(train, val)
    unseen = CtrData(rows=[{"a": "new", "b": "1", "noise": "zzz", "tags": ["never"]}], labels=np.zeros(1))

    assert 0 < model.predict(unseen)[0] < 1


def test_bootstrap_interval_brackets_the_auc():
    rng = np.random.default_rng(3)
    labels = (rng.random(3000) < 0.05).astype(float)
    scores = labels * 0.5 + rng.random(3000)

    auc = ctr_metrics(labels, np.clip(scores, 0, 1))["auc"]
    interval = bootstrap_auc(labels, scores, rounds=200)

    assert interval["auc_ci95_low"] < auc < interval["auc_ci95_high"]


def test_candidate_fast_path_scores_like_full_rows():
    train, val = xor_data(2000, 1, text=True), xor_data(500, 2, text=True)
    model = CtrModel(config(text_slots=1)).fit(train, val)
    shared = {"a": "3", "tags": ["t1", "t4"]}
    candidates = [{"b": str(b), "noise": str(b * 7)} for b in range(12)]
    texts = [np.stack([train.text_vectors[0][b % 2] for b in range(12)])]

    fast = model.predict_candidates(shared, candidates, texts)
    full = model.predict(
        CtrData(
            rows=[{**shared, **c} for c in candidates],
            text_ids=[np.arange(12) % 2],
            text_vectors=train.text_vectors,
        )
    )

    np.testing.assert_allclose(fast, full, rtol=1e-5)


def test_dcn_cross_layers_learn_the_interaction_without_the_fm_and_mlp_alone():
    train, val, test = xor_data(6000, 1), xor_data(1500, 2), xor_data(2000, 3)
    cfg = config()
    cfg.cross_layers, cfg.hidden = 2, []  # no hidden MLP layer: a linear read-out of the fields + cross network

    model = CtrModel(cfg).fit(train, val)

    assert len(model.nets[0].cross) == 2
    assert ctr_metrics(test.labels, model.predict(test))["auc"] > 0.8


def test_dense_features_reach_the_model():
    def data(n: int, seed: int) -> CtrData:
        base = xor_data(n, seed)
        rng = np.random.default_rng(seed + 100)
        score = rng.normal(size=n)
        base.labels = (rng.random(n) < 1 / (1 + np.exp(-3 * score))).astype(np.float64)  # only the dense feature
        base.dense = np.stack([score, rng.normal(size=n)], axis=1).astype(np.float32)
        return base

    train, val, test = data(4000, 1), data(1000, 2), data(2000, 3)
    cfg = config()
    cfg.dense_dim = 2

    model = CtrModel(cfg).fit(train, val)

    assert ctr_metrics(test.labels, model.predict(test))["auc"] > 0.8
    with pytest.raises(ValueError, match="dense features"):
        model.predict(xor_data(10, 4))  # rows without them


def test_seed_ensemble_averages_its_networks_and_survives_a_round_trip(tmp_path):
    train, val = xor_data(2000, 1, text=True), xor_data(500, 2, text=True)
    cfg = config(text_slots=1)
    cfg.seeds = 2

    model = CtrModel(cfg).fit(train, val)
    inputs, texts, dense = model._tensors(val)
    each = [model._logits(inputs, texts, dense, nets=[net]) for net in model.nets]
    model.save(tmp_path / "v1")
    loaded = CtrModel.load(tmp_path / "v1")

    assert len(model.nets) == len(loaded.nets) == 2
    assert {h["seed"] for h in model.history} == {cfg.seed, cfg.seed + 1}
    assert not np.allclose(each[0], each[1])  # different seeds, different networks
    np.testing.assert_allclose(model.predict_logits(val), (each[0] + each[1]) / 2, rtol=1e-6)
    np.testing.assert_allclose(loaded.predict(val), model.predict(val), rtol=1e-5)


def test_lightgbm_keeps_the_setting_with_the_best_validation_loss(caplog):
    from ads.ml import fit_lightgbm

    train, val, test = xor_data(3000, 1), xor_data(1000, 2), xor_data(1000, 3)
    specs = CtrModel(config()).specs
    grid = [
        {"num_leaves": 2, "min_data_in_leaf": 50},
        {"num_leaves": 15, "min_data_in_leaf": 20},
    ]  # a smaller min: the Dataset must allow it

    with caplog.at_level("INFO", logger="ads.ml"):
        predict = fit_lightgbm(train, val, specs, grid=grid)

    losses = [
        float(r.getMessage().split("log loss ")[1].split()[0]) for r in caplog.records if "lightgbm" in r.getMessage()
    ]
    assert len(losses) == 2 and losses[1] < losses[0]  # stumps cannot see the parity interaction
    assert ctr_metrics(test.labels, predict(test))["auc"] > 0.75
