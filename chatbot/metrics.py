"""The intent metrics that training jobs, ``evaluate intents`` and its baselines report.

The ECE is :func:`backbone.metrics.expected_calibration_error` (imported here for ``chatbot.ml``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

from backbone.metrics import expected_calibration_error
from chatbot.classifier import IntentClassifier, Prediction


def intent_metrics(
    classifier: IntentClassifier, embeddings: np.ndarray, gold: Sequence[str], texts: Sequence[str]
) -> dict[str, float]:
    """:func:`prediction_metrics` of ``classifier`` on ``texts`` (and their embeddings)."""
    return prediction_metrics(classifier.predict(embeddings, texts), gold, classifier.oos_label)


def prediction_metrics(predictions: Sequence[Prediction], gold: Sequence[str], oos: str | None) -> dict[str, float]:
    """Metrics of what chat answers: accuracy, macro-F1 and 15-bin ECE of the answered intent
    (out of scope counts as the ``oos`` label, or as wrong when the data has none), the share
    answered out of scope and the accuracy of the top label alone; with an out-of-scope class also
    in-scope accuracy and out-of-scope recall/precision."""
    final = [p.intent if p.intent is not None else (oos or "") for p in predictions]
    gold = list(gold)
    metrics = label_metrics(gold, final, np.array([p.confidence for p in predictions]))
    metrics["out_of_scope_share"] = round(float(np.mean([p.intent is None for p in predictions])), 4)
    metrics["top_label_accuracy"] = round(float(np.mean([p.ranked[0][0] == g for p, g in zip(predictions, gold)])), 4)
    if oos is not None:
        metrics.update(out_of_scope_metrics(gold, final, oos))
    return metrics


def label_metrics(gold: Sequence[str], pred: Sequence[str], confidence: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 (over the gold labels) and ECE for string labels."""
    correct = np.array([g == p for g, p in zip(gold, pred, strict=True)])
    return {
        "accuracy": round(float(correct.mean()), 4),
        "macro_f1": round(float(f1_score(gold, pred, labels=sorted(set(gold)), average="macro")), 4),
        "ece": expected_calibration_error(confidence, correct),
        "n": len(gold),
    }


def out_of_scope_metrics(gold: Sequence[str], final: Sequence[str], oos: str) -> dict[str, float]:
    """In-scope accuracy (an in-scope message flagged out-of-scope is wrong) and out-of-scope recall/precision."""
    g, f = np.asarray(gold), np.asarray(final)
    in_scope, flagged = g != oos, f == oos
    return {
        "in_scope_accuracy": round(float((f == g)[in_scope].mean()), 4) if in_scope.any() else 0.0,
        "oos_recall": round(float(flagged[~in_scope].mean()), 4) if (~in_scope).any() else 0.0,
        "oos_precision": round(float((~in_scope)[flagged].mean()), 4) if flagged.any() else 0.0,
    }
