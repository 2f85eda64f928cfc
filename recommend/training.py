"""What ``manage.py train recommend`` trains: the served recommender, its validation for a scheduled
retraining's gate, and the item-text task ``recommend_items`` of the shared multi-task trainer.

- :func:`fit` (the app trainer's ``fit``) trains :func:`recommend.ml.fit_recommender` on the events in
  the database and a backbone version's product embeddings; :func:`validate_version` (its
  ``validate``) scores a recommender on the newest events of a stable sample of customers, held out
  of a gated run's training (:func:`held_out_events`), as the API would answer those customers.
- The item-text task pulls items that co-occur (one basket or session, or one after the other in a
  customer's history) together in the backbone's embedding space with an in-batch contrastive loss
  (InfoNCE, symmetric), so the shared encoder learns what "goes together" in this shop while the
  other apps' tasks train the same weights.
"""

from __future__ import annotations

import json
import logging
import math
import random
import resource
import time
import zlib
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings
from torch import nn

from backbone import lifecycle
from backbone.encoder import Encoder
from backbone.metrics import binary_ndcg_at_k
from backbone.models import ModelVersion
from catalog.models import Event, Product, ProductEmbedding
from recommend import ml, services
from recommend.models import RecommenderModel

logger = logging.getLogger(__name__)

DEFAULT_MAX_PAIRS = 20000
VALIDATION_PAIRS = 500
VALIDATION_SHARE = 0.05  # of the customers (a stable hash of the id): their newest event validates a gated run
VALIDATION_LIMIT = 500  # customers at most
MIN_VALIDATION = 20


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


# --- the recommender ---------------------------------------------------------------------------------


def training_summary() -> str:
    """What the recommender would train on, in one line ("" when no customer has events): the
    ``data`` of the app trainer."""
    events = Event.objects.filter(customer__isnull=False).exclude(type__in=services.IGNORED)
    if not events.exists():
        return ""
    return f"{events.count()} events of {events.values('customer_id').distinct().count()} customers"


def load_training_data(
    *, version: ModelVersion, held_out: Collection[int] = ()
) -> tuple[ml.TrainSet, list[int], int, float]:
    """Read every identified customer's events (returns ignored, and the ``held_out`` event ids) and the
    anonymous sessions into a TrainSet of the products with events, keyed by SKU, with ``version``'s
    product embeddings.

    Returns (train set, product id per item, events read, the newest one's unix time).
    """
    rows = (
        Event.objects.exclude(type__in=services.IGNORED)
        .exclude(pk__in=list(held_out))
        .order_by()
        .values_list("customer__external_id", "product__sku", "timestamp", "session")
    )
    events, sessions, n_events, newest = [], {}, 0, 0.0
    for customer, sku, timestamp, session in rows.iterator(chunk_size=20000):
        n_events += 1
        newest = max(newest, timestamp.timestamp())
        if customer is not None:
            events.append((customer, sku, timestamp.timestamp()))
        elif session:
            sessions.setdefault(session, set()).add(sku)
    train, _ = ml.build_train_set(events, sessions.values())
    ids = dict(Product.objects.filter(sku__in=train.items).values_list("sku", "id"))
    product_ids = [ids[sku] for sku in train.items]
    train.item_vectors = product_vectors(version=version, product_ids=product_ids)
    return train, product_ids, n_events, newest


def product_vectors(*, version: ModelVersion, product_ids: list[int]) -> np.ndarray | None:
    """Return ``version``'s embeddings of these products (zeros where missing), or None if it has none."""
    position = {pid: i for i, pid in enumerate(product_ids)}
    vectors = None
    rows = ProductEmbedding.objects.filter(version=version, product_id__in=product_ids).values_list(
        "product_id", "embedding"
    )
    for pid, vector in rows.iterator(chunk_size=2000):
        if vectors is None:
            vectors = np.zeros((len(product_ids), len(vector)), dtype=np.float32)
        vectors[position[pid]] = np.asarray(vector, dtype=np.float32)
    return vectors


def fit(
    *,
    version: ModelVersion,
    parameters: dict[str, Any] | None = None,
    job_id: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> RecommenderModel:
    """Train the served recommender (:func:`recommend.ml.fit_recommender`) on the events in the
    database and ``version``'s product embeddings; return its row, ready to activate.

    The app trainer's ``fit``: the training job activates the row with the backbone version.
    Keys of ``parameters`` that are not :class:`~recommend.ml.HybridConfig` fields (or ``seed``)
    are ignored; in a gated run (``gate``) the gate's validation events
    (:func:`held_out_events`) are left out of training.
    Side effects: a RecommenderModel row and a folder under ``MODELS_DIR/recommend/``.
    Raises RecommendError when no customer has events; on any failure the row is marked failed
    (with the error) and the exception goes on to the job.
    """
    progress = progress or (lambda fraction, message: None)
    params = {k: v for k, v in (parameters or {}).items() if k in services.PARAMETERS}
    row = lifecycle.create_queued(RecommenderModel, prefix="rec", parameters=params, training_job_id=job_id)
    lifecycle.claim(RecommenderModel, pk=row.pk)
    started = time.monotonic()
    try:
        held_out = [event for event, _ in held_out_events().values()] if (parameters or {}).get("gate") else []
        train, product_ids, n_events, newest = load_training_data(version=version, held_out=held_out)
        if not any(len(h.items) for h in train.histories):
            raise services.RecommendError("no customer events to train on")
        line = f"{n_events} events, {len(train.histories)} customers, {train.n_items} products with events"
        line += f"; {len(held_out)} newest events held out for the validation gate" if held_out else ""
        lifecycle.append_log(RecommenderModel, pk=row.pk, line=line)
        progress(0.05, f"recommender: {line}")
        model = ml.fit_recommender(train, params, progress=lambda f, m: progress(0.05 + 0.9 * f, f"recommender: {m}"))
        folder = Path(settings.MODELS_DIR) / "recommend" / row.name
        model.save(folder)
        (folder / "items.json").write_text(json.dumps(product_ids))
        metrics = {
            "seconds": round(time.monotonic() - started, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rankers": len(model.boosters),
            "backbone": version.name,
            "with_text": train.item_vectors is not None,
            "newest_event": datetime.fromtimestamp(newest, UTC).isoformat(),
            "held_out_events": len(held_out),
        }
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    except Exception as exc:
        logger.exception("training recommender %s failed", row.name)
        lifecycle.fail(RecommenderModel, pk=row.pk, error=f"{type(exc).__name__}: {exc}")
        raise
    lifecycle.append_log(RecommenderModel, pk=row.pk, line=f"trained in {metrics['seconds']}s")
    counts = {"n_items": train.n_items, "n_customers": len(train.histories), "n_events": n_events}
    return lifecycle.succeed(RecommenderModel, pk=row.pk, path=str(folder), metrics=metrics, **counts)


# --- the validation gate ----------------------------------------------------------------------------


def is_validation_customer(external_id: str) -> bool:
    """Whether the customer's newest event validates a gated run (a salted stable hash of the id)."""
    return zlib.crc32(("validation " + external_id).encode()) % 1000 < VALIDATION_SHARE * 1000


def held_out_events() -> dict[str, tuple[int, int]]:
    """{customer external id: (event id, product id)} of the gate's validation events: each validation
    customer's newest event, when it is newer than every event the serving recommender trained on
    (``metrics["newest_event"]``: so neither model has seen it) and its product is nowhere else in
    the customer's history. At most VALIDATION_LIMIT customers, by id; none without a serving one."""
    serving = lifecycle.active(RecommenderModel)
    cutoff = (serving.metrics or {}).get("newest_event") if serving is not None else None
    if not cutoff:
        return {}
    newest: dict[str, tuple[int, int, int]] = {}
    rows = (
        Event.objects.filter(customer__isnull=False, timestamp__gt=datetime.fromisoformat(cutoff))
        .exclude(type__in=services.IGNORED)
        .order_by("customer_id", "-timestamp", "-id")
        .values_list("customer__external_id", "customer_id", "id", "product_id")
    )
    for external_id, customer_id, event_id, product_id in rows.iterator(chunk_size=20000):
        if external_id not in newest and is_validation_customer(external_id):
            newest[external_id] = (customer_id, event_id, product_id)
    chosen = sorted(newest.items())
    again = set(
        Event.objects.filter(
            customer_id__in=[c for _, (c, _, _) in chosen], product_id__in=[p for _, (_, _, p) in chosen]
        )
        .exclude(pk__in=[e for _, (_, e, _) in chosen])
        .values_list("customer_id", "product_id")
    )
    kept = [(x, (e, p)) for x, (c, e, p) in chosen if (c, p) not in again]
    return dict(kept[:VALIDATION_LIMIT])


def validate_version(*, version, row: RecommenderModel | None) -> tuple[str, float, int] | None:
    """NDCG@10 of recommender ``row`` on the gate's validation events (:func:`held_out_events`): each
    customer's for-you answer as the API builds it (:func:`recommend.services.answer_items`) from
    the history before that event. The recommend score in a scheduled retraining's gate (``version``
    is unused: the row holds its own text vectors); None without a row or with too few events."""
    held_out = held_out_events()
    served = services.load_served(row) if row is not None and len(held_out) >= MIN_VALIDATION else None
    if served is None:
        return None
    ndcgs = []
    for external_id, (_, product_id) in held_out.items():
        history = services.customer_events(external_id=external_id, limit=services.HISTORY_EVENTS + 1)[1:]
        consumed = services.consumed_products(external_id=external_id) - {product_id}
        items = services.answer_items(served, history, consumed, k=10)
        ndcgs.append(binary_ndcg_at_k([item.product.pk for item in items], {product_id}, 10))
    return "ndcg@10", round(float(np.mean(ndcgs)), 4), len(ndcgs)
