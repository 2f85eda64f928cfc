"""What the intent task fits on the validation split after training: the prototypes' map onto the
head's logit scale, the temperature and the out-of-scope threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar


def fit_temperature(logits: np.ndarray, y: Sequence[int]) -> float:
    """Temperature that minimises the negative log-likelihood on held-out logits.

    1.0 when the top logit of every held-out example is its label (a small split the head gets
    all right): the likelihood then only rises as the temperature shrinks, and the smallest one
    tried would answer every message, unrelated ones too, at confidence 1.0.
    """
    y = np.asarray(y)
    if (logits.argmax(axis=1) == y).all():
        return 1.0

    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())

    return round(math.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x), 4)


def fit_prototype_map(embeddings: np.ndarray, head_logits: np.ndarray, prototypes: np.ndarray) -> tuple[float, float]:
    """Least-squares a, b with head logit ~= a x cosine-to-prototype + b over all (example, label) pairs."""
    cos = (embeddings @ prototypes.T).ravel()
    a, b = np.polyfit(cos, head_logits.ravel(), 1)
    return float(a), float(b)


def choose_threshold(
    probs: np.ndarray, y: np.ndarray, oos_index: int | None, *, max_in_scope_drop: float, quantile: float
) -> float:
    """Out-of-scope threshold on the top probability, chosen on validation.

    With out-of-scope examples: the threshold with the best out-of-scope recall whose in-scope
    accuracy is at most ``max_in_scope_drop`` below the accuracy without a threshold. Without
    them: the ``quantile`` of the top probability of in-scope messages (that share is answered out
    of scope: the recipe's ``review_quantile``); 0 (the recipe's default) is no threshold.
    """
    top, pred = probs.max(axis=1), probs.argmax(axis=1)
    if oos_index is None:
        if quantile <= 0:
            return 0.0
        # floored, not rounded: a threshold rounded up to 1.0 would send every saturated message out of scope
        return math.floor(float(np.quantile(top, quantile)) * 1e4) / 1e4
    in_scope = y != oos_index
    best, best_recall = 0.0, -1.0
    base = None
    for t in np.linspace(0.0, 0.99, 100):
        flagged = (top < t) | (pred == oos_index)
        acc = float(((pred == y) & ~flagged)[in_scope].mean())
        recall = float(flagged[~in_scope].mean()) if (~in_scope).any() else 0.0
        if base is None:
            base = acc
        if acc >= base - max_in_scope_drop and recall > best_recall:
            best, best_recall = float(t), recall
    return round(best, 4)
