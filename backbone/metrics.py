"""The evaluation metrics the apps share: ranking metrics (search, recommend) and calibration (chatbot).

Pure functions, no Django here, so they can be tested (and reused, ``bench/served.py``) alone.
A ranking is a sequence of item ids, best first.

- Search grades its judgements (Home Depot: 1.0-3.0): :func:`ndcg_at_k` gains 2^(relevance-1) - 1
  (relevance 1 "irrelevant" and unjudged products gain 0, 3 gains 3).
- Recommend has binary relevance (the held-out items): :func:`binary_ndcg_at_k` gains 1 per
  held-out item, :func:`hit_rate_at_k`; its ideal and recall may count held-out items that cannot
  be ranked at all (``n_relevant``).

Both discount by log2(rank + 1) (:func:`dcg`), so binary relevance is graded relevance 2.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

ECE_BINS = 15


def dcg(gains: Sequence[float]) -> float:
    """Return the discounted cumulative gain of ``gains`` in rank order (log2(rank + 1) discount)."""
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def gain(relevance: float) -> float:
    """Return the NDCG gain of a graded relevance: 2^(relevance-1) - 1, never below 0 (unjudged: 0)."""
    return max(0.0, 2.0 ** (relevance - 1.0) - 1.0) if relevance > 0 else 0.0


def ndcg_at_k(ranking: Sequence, judgements: Mapping[Any, float], k: int = 10) -> float:
    """Return NDCG@k with gain :func:`gain`; the ideal ranking is built from ``judgements``.

    Returns 0.0 when no judged product has a gain (nothing to find).
    """
    ideal = dcg(sorted((gain(r) for r in judgements.values()), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    return dcg([gain(judgements.get(item, 0.0)) for item in ranking[:k]]) / ideal


def binary_ndcg_at_k(ranking: Sequence, relevant: Collection, k: int = 10, n_relevant: int | None = None) -> float:
    """Return NDCG@k with binary gain: 1 for an item of ``relevant``, else 0.

    The ideal ranking puts min(``n_relevant``, k) relevant items first; ``n_relevant`` (default:
    the size of ``relevant``) may be larger, for relevant items no ranking can hold. 0.0 when
    nothing is relevant.
    """
    size = len(set(relevant)) if n_relevant is None else n_relevant
    ideal = dcg([1.0] * min(size, k))
    if ideal <= 0:
        return 0.0
    return dcg([1.0 if item in relevant else 0.0 for item in ranking[:k]]) / ideal


def hit_rate_at_k(ranking: Sequence, relevant: Collection, k: int = 10) -> float:
    """Return 1.0 when an item of ``relevant`` is in the top ``k``, else 0.0 (HR@k of one query)."""
    return 1.0 if any(item in relevant for item in ranking[:k]) else 0.0


def recall_at_k(ranking: Sequence, relevant: Collection, k: int = 100, n_relevant: int | None = None) -> float:
    """Return the share of ``relevant`` items found in the top ``k`` (0.0 when nothing is relevant).

    ``n_relevant`` (default: the size of ``relevant``) is the denominator, as in :func:`binary_ndcg_at_k`.
    """
    size = len(set(relevant)) if n_relevant is None else n_relevant
    if not size:
        return 0.0
    found = set(ranking[:k]) & set(relevant)
    return len(found) / size


def reciprocal_rank(ranking: Sequence, relevant: Collection, k: int = 100) -> float:
    """Return 1 / rank of the first relevant item in the top ``k``, or 0.0 when none is there."""
    for rank, item in enumerate(ranking[:k], start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def relevant_items(judgements: Mapping[str, float], threshold: float) -> set[str]:
    """Return the items judged at least ``threshold`` (the 'relevant' ones for recall and MRR)."""
    return {item for item, relevance in judgements.items() if relevance >= threshold}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with equal-width confidence bins: sum over bins of |accuracy - confidence| x share."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            ece += abs(correct[mask].mean() - confidence[mask].mean()) * mask.mean()
    return round(float(ece), 4)
