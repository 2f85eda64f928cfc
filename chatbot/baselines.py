"""The baselines that evaluations measure beside the intent model, on the same splits.

- :func:`validation_baselines`: the frozen encoder + logistic regression on the task's own
  train/validation split (what the shared trainer reports when asked for baselines);
- :func:`tfidf_baseline`, :func:`frozen_baseline`: TF-IDF and the frozen packaged encoder, each +
  logistic regression, measured on ``evaluate intents``' test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from backbone.encoder import Encoder
from chatbot.metrics import label_metrics, out_of_scope_metrics

if TYPE_CHECKING:
    from chatbot.ml import IntentTask


def validation_baselines(task: IntentTask, encoder: Encoder) -> dict[str, dict[str, float]]:
    """Frozen encoder + logistic regression on the same train/validation split."""
    x_train = encoder.encode(task.train_texts, batch_size=task.eval_batch_size)
    x_val = encoder.encode(task.val_texts, batch_size=task.eval_batch_size)
    clf = LogisticRegression(max_iter=2000, C=10.0)
    clf.fit(x_train, task.train_y)
    pred = clf.predict(x_val)
    return {"frozen_encoder_logreg": classification_metrics(task.val_y, pred, n_train=len(task.train_texts))}


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], n_train: int) -> dict[str, float]:
    """Accuracy and macro-F1 on the validation split, with its size."""
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "macro_f1": round(float(f1_score(y_true, y_pred, average="macro")), 4),
        "n_val": len(y_true),
        "n_train": n_train,
    }


def tfidf_baseline(task: IntentTask, test: tuple[list[str], list[str]], oos: str | None) -> dict[str, float]:
    """TF-IDF (word 1-2 grams) + logistic regression on the task's training split."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_train = vectorizer.fit_transform(task.train_texts)
    clf = LogisticRegression(max_iter=3000, C=20.0)
    clf.fit(x_train, task.train_y)
    return baseline_metrics(clf.predict_proba(vectorizer.transform(test[0])), clf.classes_, task, test, oos)


def frozen_baseline(
    encoder: Encoder, task: IntentTask, test: tuple[list[str], list[str]], oos: str | None
) -> dict[str, float]:
    """The packaged encoder, frozen, + logistic regression (before fine-tuning changes it)."""
    x_train = encoder.encode(task.train_texts, batch_size=128)
    clf = LogisticRegression(max_iter=3000, C=10.0)
    clf.fit(x_train, task.train_y)
    return baseline_metrics(clf.predict_proba(encoder.encode(test[0], batch_size=128)), clf.classes_, task, test, oos)


def baseline_metrics(probs, classes, task: IntentTask, test, oos: str | None) -> dict[str, float]:
    """Metrics of a baseline's probabilities (argmax; out-of-scope only when it is the argmax)."""
    pred = [task.labels[classes[i]] for i in probs.argmax(axis=1)]
    metrics = label_metrics(test[1], pred, probs.max(axis=1))
    if oos is not None:
        metrics.update(out_of_scope_metrics(test[1], pred, oos))
    return metrics
