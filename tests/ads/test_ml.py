"""The pCTR recipe on synthetic data with a known answer: interactions, crosses, text, taste profiles,
calibration, persistence, the serving fast path, and the baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ads.baselines import fit_hashed_logistic, fit_lightgbm
from ads.ml import (
    CtrConfig,
    CtrData,
    CtrModel,
    Platt,
    TasteProfiles,
    bootstrap_auc,
    ctr_metrics,
    fit_ctr_model,
    out_of_fold_tastes,
)

FIELDS = [{"name": "a"}, {"name": "b"}, {"name": "noise"}, {"name": "tags", "kind": "bag", "max_len": 3}]
QUICK = {"max_epochs": 6, "batch_size": 256, "lr": 5e-3, "first_order_lr": 5e-3, "patience": 2, "seeds": 1}


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
    slots = {"text_ids": [text_ids], "text_vectors": [text_vectors]} if text else {}
    return CtrData(fields=FIELDS, rows=rows, labels=labels, **slots)


def taste_data(n: int, seed: int, items: np.ndarray) -> CtrData:
    """Customers who click items whose embedding is near their own hidden taste; every row's item is new
    to the model's id fields (``ad`` is unique per row), so only the taste profiles can tell."""
    rng = np.random.default_rng(seed)
    tastes = np.random.default_rng(5).normal(size=(20, items.shape[1]))
    customer = rng.integers(0, 20, n)
    item = rng.integers(0, len(items), n)
    affinity = (tastes[customer] * items[item]).sum(1)
    labels = (rng.random(n) < 1 / (1 + np.exp(-4 * affinity / affinity.std()))).astype(np.float64)
    rows = [{"customer": f"c{c}", "ad": f"{seed}-{i}"} for i, c in enumerate(customer)]
    return CtrData(
        fields=[{"name": "customer"}, {"name": "ad"}], rows=rows, labels=labels, text_ids=[item], text_vectors=[items]
    )


def unit_vectors(n: int, dim: int = 384, seed: int = 3) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_deepfm_learns_a_field_interaction_that_logistic_regression_cannot():
    train, val, test = xor_data(6000, 1), xor_data(1500, 2), xor_data(2000, 3)

    model = fit_ctr_model(train, val, QUICK)
    logistic = fit_hashed_logistic(train, val)

    assert ctr_metrics(test.labels, model.predict(test))["auc"] > 0.8
    assert ctr_metrics(test.labels, logistic(test))["auc"] < 0.6


def test_a_cross_field_gives_logistic_regression_the_interaction():
    train, val, test = xor_data(6000, 1), xor_data(1500, 2), xor_data(2000, 3)
    for data in (train, val, test):
        data.fields = [*FIELDS, {"name": "a*b", "kind": "cross", "of": ["a", "b"]}]

    logistic = fit_hashed_logistic(train, val)

    assert ctr_metrics(test.labels, logistic(test))["auc"] > 0.8


def test_text_embeddings_add_what_the_fields_lack():
    train, val, test = xor_data(6000, 1, text=True), xor_data(1500, 2, text=True), xor_data(2000, 3, text=True)

    with_text = fit_ctr_model(train, val, QUICK)
    without = fit_ctr_model(train.without_text(), val.without_text(), QUICK)

    gain = (
        ctr_metrics(test.labels, with_text.predict(test))["auc"]
        - ctr_metrics(test.labels, without.predict(test.without_text()))["auc"]
    )
    assert gain > 0.02


def test_taste_profiles_are_the_mean_creatives_a_customer_clicked_and_skipped():
    items = np.eye(3, 384, dtype=np.float32)
    keys = np.asarray(["ann", "ann", "ann", "bob", ""], dtype=object)

    profiles = TasteProfiles.build(keys, np.asarray([0, 1, 2, 2, 0]), items, np.asarray([1.0, 1.0, 0.0, 0.0, 1.0]))

    liked, disliked = profiles.liked[profiles.index(["ann", "bob", "stranger", ""])], profiles.disliked
    np.testing.assert_allclose(liked[0, :3], [2**-0.5, 2**-0.5, 0], rtol=1e-6)
    assert not liked[1:].any()  # bob clicked nothing; strangers and anonymous rows read zeros
    np.testing.assert_allclose(disliked[profiles.index(["ann", "bob"]), :3], [[0, 0, 1], [0, 0, 1]])


def test_out_of_fold_tastes_never_read_the_rows_own_click():
    items = unit_vectors(50)
    data = taste_data(400, 1, items)
    flipped = CtrData(
        fields=data.fields, rows=data.rows, labels=data.labels.copy(), text_ids=data.text_ids, text_vectors=[items]
    )
    flipped.labels[7] = 1 - flipped.labels[7]

    liked, disliked, ids = out_of_fold_tastes(data, "customer", folds=5, seed=0)
    liked2, disliked2, ids2 = out_of_fold_tastes(flipped, "customer", folds=5, seed=0)

    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_allclose(liked[ids[7]], liked2[ids2[7]], atol=1e-6)
    np.testing.assert_allclose(disliked[ids[7]], disliked2[ids2[7]], atol=1e-6)


def test_taste_profiles_predict_clicks_on_creatives_never_seen_in_training():
    items = unit_vectors(300)
    train, val, test = taste_data(6000, 1, items), taste_data(1500, 2, items), taste_data(2000, 3, items)

    model = fit_ctr_model(train, val, QUICK)

    assert model.config.profile_field == "customer"
    assert ctr_metrics(test.labels, model.predict(test))["auc"] > 0.7


def test_platt_scaling_calibrates_shifted_scores():
    rng = np.random.default_rng(0)
    labels = (rng.random(5000) < 0.2).astype(float)
    logits = np.where(labels == 1, 1.0, -1.0) + rng.normal(size=5000) + 3.0  # far too confident of clicks

    platt = Platt.fit(logits, labels)

    assert ctr_metrics(labels, 1 / (1 + np.exp(-logits)))["calibration_ratio"] > 3
    assert abs(ctr_metrics(labels, platt(logits))["calibration_ratio"] - 1) < 0.05


def test_saved_model_with_taste_profiles_predicts_the_same_after_loading(tmp_path):
    items = unit_vectors(100)
    train, val = taste_data(2000, 1, items), taste_data(500, 2, items)
    model = fit_ctr_model(train, val, {**QUICK, "seeds": 2})

    model.save(tmp_path / "v1", {"auc": 0.5})
    loaded = CtrModel.load(tmp_path / "v1")

    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == ["config.json", "metrics.json", "weights.safetensors"]
    assert len(loaded.nets) == 2 and loaded.profiles.keys == model.profiles.keys
    np.testing.assert_allclose(loaded.predict(val), model.predict(val), rtol=1e-5)


def test_unseen_values_map_to_the_unknown_slot():
    train, val = xor_data(1000, 1), xor_data(300, 2)
    model = fit_ctr_model(train, val, QUICK)
    unseen = CtrData(fields=FIELDS, rows=[{"a": "new", "b": "1", "noise": "zzz", "tags": ["never"]}])

    assert 0 < model.predict(unseen)[0] < 1


def test_bootstrap_interval_brackets_the_auc():
    rng = np.random.default_rng(3)
    labels = (rng.random(3000) < 0.05).astype(float)
    scores = labels * 0.5 + rng.random(3000)

    auc = ctr_metrics(labels, np.clip(scores, 0, 1))["auc"]
    interval = bootstrap_auc(labels, scores, rounds=200)

    assert interval["auc_ci95_low"] < auc < interval["auc_ci95_high"]
    assert interval["bootstrap_rounds"] == 200


def test_candidate_fast_path_scores_like_full_rows():
    """What serving calls (shared context, one taste lookup, a cross of a shared and a candidate field)
    gives what ``evaluate`` calls on the same rows."""
    items = unit_vectors(100)
    data = taste_data(2500, 1, items)
    fields = [*data.fields, {"name": "slot"}, {"name": "customer*ad", "kind": "cross", "of": ["customer", "ad"]}]
    for row in data.rows:
        row["slot"] = "top"
    data.fields = fields
    model = fit_ctr_model(data.subset(np.arange(2000)), data.subset(np.arange(2000, 2500)), QUICK)
    shared = {"customer": "c3", "slot": "top"}
    candidates = [{"ad": f"1-{i}"} for i in range(12)]
    creatives = items[np.arange(12) * 7]

    fast = model.predict_candidates(shared, candidates, [creatives])
    full = model.predict(
        CtrData(
            fields=fields,
            rows=[{**shared, **c} for c in candidates],
            text_ids=[np.arange(12) * 7],
            text_vectors=[items],
        )
    )

    np.testing.assert_allclose(fast, full, rtol=1e-5)


def test_seed_ensemble_averages_its_networks():
    train, val = xor_data(2000, 1, text=True), xor_data(500, 2, text=True)

    model = fit_ctr_model(train, val, {**QUICK, "seeds": 2})
    inputs = model._data_inputs(val)
    each = [model._logits(inputs, nets=[net]) for net in model.nets]

    assert {h["seed"] for h in model.history} == {CtrConfig.seed, CtrConfig.seed + 1}
    assert not np.allclose(each[0], each[1])  # different seeds, different networks
    np.testing.assert_allclose(model.predict_logits(val), (each[0] + each[1]) / 2, rtol=1e-6)


def test_lightgbm_keeps_the_setting_with_the_best_validation_loss(caplog):
    train, val, test = xor_data(3000, 1), xor_data(1000, 2), xor_data(1000, 3)
    grid = [
        {"num_leaves": 2, "min_data_in_leaf": 50},
        {"num_leaves": 15, "min_data_in_leaf": 20},
    ]  # a smaller min: the Dataset must allow it

    with caplog.at_level("INFO", logger="ads.baselines"):
        predict = fit_lightgbm(train, val, grid=grid)

    losses = [
        float(r.getMessage().split("log loss ")[1].split()[0]) for r in caplog.records if "lightgbm" in r.getMessage()
    ]
    assert len(losses) == 2 and losses[1] < losses[0]  # stumps cannot see the parity interaction
    assert ctr_metrics(test.labels, predict(test))["auc"] > 0.75
