"""Ranking metrics for search evaluation: pure functions over ranked ids and graded judgements.

No Django here, so the metrics can be tested (and reused) alone. A ranking is a sequence of
product ids, best first; judgements map product id -> graded relevance (Home Depot: 1.0-3.0).
NDCG's gain is 2^(relevance-1) - 1 (relevance 1 "irrelevant" and unjudged products gain 0, 3 gains 3).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any


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


def recall_at_k(ranking: Sequence[str], relevant: Collection[str], k: int = 100) -> float:
    """Return the share of ``relevant`` items found in the top ``k`` (0.0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    found = set(ranking[:k]) & set(relevant)
    return len(found) / len(set(relevant))


def reciprocal_rank(ranking: Sequence[str], relevant: Collection[str], k: int = 100) -> float:
    """Return 1 / rank of the first relevant item in the top ``k``, or 0.0 when none is there."""
    for rank, item in enumerate(ranking[:k], start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def relevant_items(judgements: Mapping[str, float], threshold: float) -> set[str]:
    """Return the items judged at least ``threshold`` (the 'relevant' ones for recall and MRR)."""
    return {item for item, relevance in judgements.items() if relevance >= threshold}
