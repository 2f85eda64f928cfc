"""The intent model's pieces on synthetic data with known answers, and a tiny fine-tune."""

from __future__ import annotations

import numpy as np
import pytest

from chatbot.ml import (
    DEFAULT_SIMILARITY_THRESHOLD,
    PROTOTYPE_MARGIN,
    IntentClassifier,
    IntentTask,
    LexicalModel,
    choose_threshold,
    class_prototypes,
    expected_calibration_error,
    fit_temperature,
    similarity_threshold,
    softmax,
)


def test_expected_calibration_error_of_a_calibrated_and_an_overconfident_model():
    confidence = np.full(1000, 0.8)
    correct = np.arange(1000) % 5 != 0  # 80% right at 80% confidence
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0, abs=1e-9)
    assert expected_calibration_error(np.full(1000, 0.99), correct) == pytest.approx(0.19, abs=1e-6)


def test_temperature_scaling_fixes_overconfident_logits():
    rng = np.random.default_rng(0)
    n, c = 4000, 5
    y = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), y] += 1.5  # Gaussian noise: the true log-posterior is 1.5 x these logits
    hot = logits * 4  # an overconfident model: 4 / 1.5 times too sharp
    t = fit_temperature(hot, y)
    assert t == pytest.approx(4 / 1.5, rel=0.1)
    before = softmax(hot)
    after = softmax(hot / t)
    correct = before.argmax(1) == y
    assert expected_calibration_error(after.max(1), correct) < expected_calibration_error(before.max(1), correct) / 3


def test_threshold_catches_out_of_scope_without_costing_in_scope_accuracy():
    # in-scope rows are confident, out-of-scope rows are not: a threshold separates them
    probs = np.vstack([np.tile([0.9, 0.05, 0.05], (90, 1)), np.tile([0.4, 0.35, 0.25], (10, 1))])
    y = np.array([0] * 90 + [2] * 10)  # label 2 is the out-of-scope class
    t = choose_threshold(probs, y, 2, max_in_scope_drop=0.0, quantile=0.02)
    assert 0.4 < t <= 0.9


def test_new_intent_joins_as_a_prototype_without_changing_the_known_ones():
    dim = 8
    eye = np.eye(dim, dtype=np.float32)
    head = IntentClassifier(
        labels=["a", "b"], weight=eye[:2] * 10, bias=np.zeros(2, np.float32), prototypes=eye[:2], proto_a=10.0
    )
    extended = head.with_extra(["c"], class_prototypes(eye[[2, 2]], [0, 0], 1))
    probs = extended.predict_proba(eye[:3])
    assert extended.all_labels == ["a", "b", "c"]
    assert list(probs.argmax(1)) == [0, 1, 2]


def test_lexical_model_learns_wording_and_survives_saving():
    texts = [f"{w} please {i}" for w in ("pin", "sepa", "refund") for i in range(6)]
    y = [k for k in range(3) for _ in range(6)]
    model = LexicalModel.fit(texts, y, n_labels=4)  # label 3 only in validation: never predicted

    probe = ["my pin", "a sepa transfer", "refund it"]
    log_p = model.log_proba(probe)
    assert list(log_p.argmax(1)) == [0, 1, 2]
    assert np.allclose(np.exp(log_p).sum(1), 1.0) and (log_p[:, 3] < -20).all()
    again = LexicalModel.from_saved(model.arrays(), model.vocabularies)
    assert np.allclose(again.log_proba(probe), log_p)
    assert list(model.subset([2, 1]).log_proba(probe[1:]).argmax(1)) == [1, 0]
    assert LexicalModel.fit(texts[:6], [0] * 6, n_labels=1) is None


def test_lexical_model_keeps_its_weights_within_the_budget(monkeypatch):
    from chatbot import lexical

    texts = [f"{w} please {i}" for w in ("pin", "sepa", "refund") for i in range(6)]
    y = [k for k in range(3) for _ in range(6)]
    unbounded = LexicalModel.fit(texts, y, n_labels=3)
    assert unbounded.coef.size > 150
    monkeypatch.setattr(lexical, "LEXICAL_MAX_WEIGHTS", 150)
    model = LexicalModel.fit(texts, y, n_labels=3)
    assert model.coef.size <= 150 and list(model.log_proba(["my pin", "sepa", "refund"]).argmax(1)) == [0, 1, 2]


def test_a_lexical_classifier_refuses_embeddings_without_their_texts():
    eye = np.eye(4, dtype=np.float32)
    lexical = LexicalModel.fit(["pin code", "pin lost", "sepa in", "sepa out"], [0, 0, 1, 1], n_labels=2)
    classifier = IntentClassifier(
        labels=["a", "b"],
        weight=np.zeros((2, 4), np.float32),
        bias=np.zeros(2, np.float32),
        prototypes=eye[:2],
        lexical=lexical,
        lexical_weight=1.0,
    )
    with pytest.raises(ValueError, match="texts"):
        classifier.predict_proba(eye[:2])
    # the head is indifferent (zero weights): the wording decides
    assert list(classifier.predict_proba(eye[:2], ["sepa", "pin"]).argmax(1)) == [1, 0]


def test_intent_task_fine_tunes_and_calibrates_on_a_tiny_backbone(tiny_model_dir):
    from backbone.encoder import Encoder
    from backbone.multitask import MultiTaskTrainer, TrainingConfig

    texts = [f"please {w} my card number {i}" for w in ("block", "activate", "replace") for i in range(12)]
    labels = [w for w in ("block", "activate", "replace") for _ in range(12)]
    task = IntentTask((texts, labels), val_fraction=0.25, seed=1)
    encoder = Encoder.load(tiny_model_dir, device="cpu", max_length=32)
    result = MultiTaskTrainer(encoder, [task], TrainingConfig(epochs=2, batch_size=8, lr=1e-3)).fit()

    metrics = result.metrics["intents"]
    assert {"accuracy", "macro_f1", "ece", "temperature", "threshold"} <= set(metrics)
    config = task.head_config()
    assert config["labels"] == ["activate", "block", "replace"] and config["calibration"]["temperature"] > 0
    assert config["lexical"]["weight"] > 0 and config["lexical"]["vocabularies"]["word"]
    classifier = IntentClassifier.from_head(result.heads["intents"], config)
    assert classifier.lexical is not None
    assert classifier.predict_proba(encoder.encode(texts[:3]), texts[:3]).shape == (3, 3)
    assert np.allclose(np.linalg.norm(classifier.prototypes, axis=1), 1.0, atol=1e-4)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def test_one_prototype_alone_answers_only_what_resembles_its_examples():
    eye = np.eye(4, dtype=np.float32)
    classifier = IntentClassifier.from_prototypes(["opening_hours"], eye[:1], [0.5])

    close, unrelated = classifier.predict(np.stack([unit(eye[0] + 0.3 * eye[1]), eye[1]]))

    assert close.intent == "opening_hours" and 0.5 < close.confidence < 1.0
    assert unrelated.intent is None and unrelated.confidence < 0.01
    assert unrelated.ranked == [("opening_hours", unrelated.confidence)]


def test_prototypes_rank_by_similarity_and_leave_room_for_none_of_them():
    eye = np.eye(4, dtype=np.float32)
    classifier = IntentClassifier.from_prototypes(["a", "b"], eye[:2], [0.3, None])
    assert classifier.reject_similarity == pytest.approx(0.3)  # the mean of the known thresholds

    probs = classifier.predict_proba(np.stack([unit(eye[0] + 0.5 * eye[1]), eye[2]]))

    assert list(probs.argmax(1)) == [0, 0] and (probs.sum(1) < 1.0).all()
    assert list(classifier.is_out_of_scope(probs)) == [False, True]
    assert IntentClassifier.from_prototypes(["a"], eye[:1]).reject_similarity == DEFAULT_SIMILARITY_THRESHOLD


def test_similarity_threshold_lies_below_every_example_left_out():
    rng = np.random.default_rng(0)
    examples = unit(np.eye(16)[0] + 0.3 * rng.normal(size=(10, 16)))

    threshold = similarity_threshold(examples)

    for i in range(10):
        rest = unit(np.delete(examples, i, axis=0).sum(0))
        assert examples[i] @ rest > threshold
    assert similarity_threshold(examples[:1]) is None
    assert similarity_threshold(np.stack([examples[0]] * 2)) == pytest.approx(1.0 - PROTOTYPE_MARGIN, abs=1e-4)


def test_a_head_over_one_intent_is_refused():
    with pytest.raises(ValueError, match="at least two intents"):
        IntentTask(([f"open {i}" for i in range(10)], ["opening_hours"] * 10))


def test_predictions_count_out_of_scope_as_chat_answers_it():
    from chatbot.ml import Prediction, prediction_metrics

    predictions = [
        Prediction("a", 0.9, [("a", 0.9), ("b", 0.1)]),
        Prediction(None, 0.4, [("b", 0.4), ("a", 0.3)]),  # under the threshold: answered out of scope
        Prediction(None, 0.8, [("oos", 0.8), ("a", 0.1)]),
    ]
    metrics = prediction_metrics(predictions, ["a", "b", "oos"], "oos")
    assert metrics["accuracy"] == pytest.approx(2 / 3, abs=1e-4) and metrics["top_label_accuracy"] == 1.0
    assert metrics["out_of_scope_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert (metrics["in_scope_accuracy"], metrics["oos_recall"]) == (0.5, 1.0)
    assert prediction_metrics(predictions[:2], ["a", "b"], None)["accuracy"] == 0.5  # no out-of-scope class: wrong


def test_threshold_without_out_of_scope_examples_never_rounds_above_the_quantile():
    probs = np.array([[0.99996, 0.00004]] * 10)
    t = choose_threshold(probs, np.zeros(10, dtype=int), None, max_in_scope_drop=0.0, quantile=0.02)
    assert t <= 0.99996


def test_without_out_of_scope_examples_the_default_recipe_sends_no_message_out_of_scope():
    from chatbot.ml import RECIPE

    probs = np.array([[0.3, 0.25, 0.45], [0.9, 0.05, 0.05], [0.34, 0.33, 0.33]])
    t = choose_threshold(probs, np.array([2, 0, 0]), None, max_in_scope_drop=0.0, quantile=RECIPE["review_quantile"])
    assert t == 0.0 and not (probs.max(axis=1) < t).any()
    assert choose_threshold(probs, np.array([2, 0, 0]), None, max_in_scope_drop=0.0, quantile=0.5) > 0.33


def test_a_validation_split_the_head_gets_all_right_keeps_the_temperature_at_one():
    y = np.arange(20) % 4
    logits = np.full((20, 4), -1.0)
    logits[np.arange(20), y] = 1.0  # every message right: the likelihood rises as the temperature shrinks
    assert fit_temperature(logits, y) == 1.0
