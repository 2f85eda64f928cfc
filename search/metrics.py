"""Ranking metrics for search evaluation: pure functions over ranked ids and graded judgements.

No Django here, so the metrics can be tested (and reused) alone. A ranking is a sequence of
product ids, best first; judgements map product id -> graded relevance (Home Depot: 1.0-3.0).
Unjudged products count as gain 0 / not relevant.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence


def dcg(gains: Sequence[float]) -> float:
    """Return the discounted cumulative gain of ``gains`` in rank order (log2(rank + 1) discount)."""
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def ndcg_at_k(ranking: Sequence[str], judgements: Mapping[str, float], k: int = 10) -> float:
    """Return NDCG@k with gain = graded relevance; the ideal ranking is built from ``judgements``.

    Returns 0.0 when the query has no positive judgement (nothing to gain).
    """
    ideal = dcg(sorted(judgements.values(), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    return dcg([judgements.get(item, 0.0) for item in ranking[:k]]) / ideal


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
