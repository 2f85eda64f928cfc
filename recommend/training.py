"""The item-text task ``recommend_items`` for the shared multi-task trainer.

Items that co-occur (one basket or session, or one after the other in a customer's history) are
pulled together in the backbone's embedding space with an in-batch contrastive loss (InfoNCE,
symmetric), so the shared encoder learns what "goes together" in this shop while the other apps'
tasks train the same weights. Pure PyTorch apart from :func:`build_task`, which reads the events.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from backbone.encoder import Encoder

DEFAULT_MAX_PAIRS = 20000
VALIDATION_PAIRS = 500


class ContrastiveHead(nn.Module):
    """A learnable temperature: logits = scale * cosine."""

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=100.0) * a @ b.T


class RecommendItemsTask:
    """Contrastive item-text pairs: (text of item A, text of an item that co-occurs with A)."""

    name = "recommend_items"

    def __init__(self, train_pairs: list[tuple[str, str]], val_pairs: list[tuple[str, str]], weight: float = 1.0):
        if not train_pairs:
            raise ValueError("recommend_items: no co-occurring item pairs to train on")
        self.train_pairs, self.val_pairs, self.weight = train_pairs, val_pairs, weight

    def build_head(self, dim: int) -> nn.Module:
        return ContrastiveHead()

    def batches(self, rng: random.Random, batch_size: int) -> list[Any]:
        pairs = list(self.train_pairs)
        rng.shuffle(pairs)
        return [
            pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size) if len(pairs[i : i + batch_size]) > 1
        ]

    def loss(self, encoder: Encoder, head: nn.Module, batch: Any) -> torch.Tensor:
        a = encoder(encoder.tokenize([x for x, _ in batch]))
        b = encoder(encoder.tokenize([y for _, y in batch]))
        logits = head(a, b)
        labels = torch.arange(len(batch), device=logits.device)
        return (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)) / 2

    def evaluate(self, encoder: Encoder, head: nn.Module | None = None) -> dict[str, float]:
        """Recall@10 and MRR of finding each validation pair's partner among all validation partners."""
        if not self.val_pairs:
            return {"recall@10": 0.0, "mrr": 0.0, "n": 0}
        a = encoder.encode([x for x, _ in self.val_pairs])
        b = encoder.encode([y for _, y in self.val_pairs])
        sims = a @ b.T
        ranks = (sims > np.diag(sims)[:, None]).sum(axis=1) + 1
        return {
            "recall@10": round(float((ranks <= 10).mean()), 4),
            "mrr": round(float((1.0 / ranks).mean()), 4),
            "n": len(self.val_pairs),
        }

    def baselines(self, encoder: Encoder) -> dict[str, dict[str, float]]:
        return {"untuned": self.evaluate(encoder)}

    def head_config(self) -> dict[str, Any]:
        return {"kind": "contrastive", "train_pairs": len(self.train_pairs), "val_pairs": len(self.val_pairs)}


def cooccurring_pairs(
    sequences: list[list[int]], baskets: list[list[int]], limit: int, seed: int
) -> list[tuple[int, int]]:
    """Return distinct (a, b) item pairs: neighbours in each sequence and within each basket (seeded, capped)."""
    pairs: set[tuple[int, int]] = set()
    for seq in sequences:
        for a, b in zip(seq, seq[1:]):
            if a != b:
                pairs.add((min(a, b), max(a, b)))
    for basket in baskets:
        items = sorted(set(basket))
        for a, b in zip(items, items[1:]):
            pairs.add((a, b))
    ordered = sorted(pairs)
    random.Random(seed).shuffle(ordered)
    return ordered[:limit]


def build_task(parameters: dict[str, Any]) -> RecommendItemsTask:
    """Factory registered as ``recommend_items``: pairs from the events in the database."""
    from catalog.models import Event, Product

    limit = int(parameters.get("max_examples") or DEFAULT_MAX_PAIRS)
    seed = int(parameters.get("seed", 13))
    sequences: dict[int, list[int]] = {}
    baskets: dict[str, list[int]] = {}
    rows = Event.objects.exclude(type=Event.Type.RETURN).order_by("customer_id", "timestamp", "id")
    for customer_id, product_id, session in rows.values_list("customer_id", "product_id", "session").iterator(
        chunk_size=20000
    ):
        if customer_id is not None:
            sequences.setdefault(customer_id, []).append(product_id)
        if session:
            baskets.setdefault(session, []).append(product_id)
    pairs = cooccurring_pairs(list(sequences.values()), list(baskets.values()), limit + VALIDATION_PAIRS, seed)
    ids = {i for pair in pairs for i in pair}
    texts = {p.pk: p.text for p in Product.objects.filter(pk__in=ids)}
    text_pairs = [(texts[a], texts[b]) for a, b in pairs if a in texts and b in texts]
    n_val = min(VALIDATION_PAIRS, len(text_pairs) // 10)
    return RecommendItemsTask(
        text_pairs[n_val:], text_pairs[:n_val], weight=float(parameters.get("recommend_weight", 1.0))
    )
