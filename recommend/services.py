"""Recommendation serving: "for you", "similar", "bought together" and "popular" from the active
model plus the customer's newest events (training it: :mod:`recommend.training`).

Serving reads the customer's latest events from the database at request time, so a new event
changes the next answer without a retrain. The model knows the products that had events when it
was trained; the others (never touched, or added since) are found through their text embeddings
in pgvector (the shared backbone).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.db.models import Count, Max, Q
from pgvector.django import CosineDistance

from backbone import errors, experiments, lifecycle
from catalog.models import Customer, Event, Product, ProductEmbedding
from recommend import ml
from recommend.models import RecommendationLog, RecommenderModel, RepeatPolicy

logger = logging.getLogger(__name__)

HISTORY_EVENTS = ml.MAX_HISTORY + 1  # newest events read per request; the model keeps whole steps of MAX_HISTORY
CONSUMED = (Event.Type.PURCHASE, Event.Type.RATING)  # "already has it": excluded unless repeats are allowed
IGNORED = (Event.Type.RETURN,)
VERBS = {"view": "viewed", "click": "viewed", "cart": "added", "purchase": "bought", "rating": "rated"}
MAX_K = 100
CANDIDATES = 40  # spare candidates fetched beyond k, for out-of-stock ones
NEW_PRODUCT_MIN_SIMILARITY = 0.5
ACTIVE_CHECK_SECONDS = 2.0
POPULAR_DAYS = 30  # without a model: "popular" = distinct customers in the data's last POPULAR_DAYS days
PARAMETERS = frozenset({f.name for f in fields(ml.HybridConfig)} | {"seed"})

_LOCK = threading.RLock()
_CACHE: dict[str, Any] = {"model_id": None, "served": None, "checked_at": 0.0}


class RecommendError(errors.InvalidInput):
    """A request cannot be served as asked (unknown product, nothing to train on)."""


class UnknownProduct(RecommendError, errors.NotFound):
    """No product with this SKU (404 ``{"detail": ...}``)."""

    default_field = None


@dataclass
class ServedModel:
    """An active model loaded for serving: the model, its product ids and their positions."""

    row: RecommenderModel
    model: ml.RankedHybridModel
    product_ids: np.ndarray
    position: dict[int, int]


# What an answer shows of a product (RecommendedItemSerializer) and the filters read: the product
# text, attributes and the rest stay in the database.
ANSWER_FIELDS = ("id", "sku", "title", "category_path", "price", "in_stock")


@dataclass
class Recommendation:
    """One recommended product with its score and a human-readable reason."""

    product: Product
    score: float
    reason: str
    source: str  # "model", "new_product", "popular", "text"


# --- training -------------------------------------------------------------------------------


def unknown_parameters(parameters: dict[str, Any]) -> list[str]:
    """Return the keys of ``parameters`` that the recommender does not know (sorted)."""
    return sorted(set(parameters) - PARAMETERS)


# --- serving --------------------------------------------------------------------------------


def served_model() -> ServedModel | None:
    """Return the active model loaded once per process (re-checked every ``ACTIVE_CHECK_SECONDS``), or None."""
    now = time.monotonic()
    with _LOCK:
        if now - _CACHE["checked_at"] < ACTIVE_CHECK_SECONDS:
            return _CACHE["served"]
        row = lifecycle.active(RecommenderModel)
        if row is None:
            _CACHE.update(model_id=None, served=None, checked_at=now)
            return None
        if _CACHE["model_id"] != row.pk:
            _CACHE.update(model_id=row.pk, served=load_served(row))
        _CACHE["checked_at"] = now
        return _CACHE["served"]


def serving_for(customer: str) -> tuple[ServedModel | None, str | None]:
    """The model that serves ``customer`` and its A/B arm: the challenger of a running experiment in
    arm B (``backbone.experiments``), else the active model (arm A, or None without an experiment)."""
    challenger, arm = experiments.choose("recommend", customer)
    if challenger is None:
        return served_model(), arm
    with _LOCK:
        if _CACHE.get("challenger_id") == challenger.pk:
            return _CACHE["challenger"], arm
    loaded = load_served(challenger)  # outside the lock: the process keeps serving while it loads
    with _LOCK:
        _CACHE.update(challenger_id=challenger.pk, challenger=loaded)
    return loaded, arm


def load_served(row: RecommenderModel) -> ServedModel | None:
    """Load a recommender row's folder for serving (None, logged, for a kind no longer served)."""
    folder = Path(row.path)
    model = ml.load_model(folder)
    if not isinstance(model, ml.RankedHybridModel):
        logger.warning("recommender %s is a %s model, which is no longer served: retrain", row.name, model.kind)
        return None
    product_ids = np.asarray(json.loads((folder / "items.json").read_text()), dtype=np.int64)
    return ServedModel(row, model, product_ids, _positions(product_ids))


def log_recommendation(
    *,
    kind: str,
    items: list[Recommendation],
    fallback: str | None = None,
    model: str | None = None,
    arm: str | None = None,
    **asked: str,
) -> str:
    """Log one answer as served (one INSERT) and return its ``rec_id``; ``model`` is the recommender
    that served it (default: the active one), ``asked`` the customer or the product SKU it was for.
    Events that echo the id are attributed to it (``monitoring``)."""
    if model is None:
        served = served_model()
        model = served.row.name if served is not None else ""
    row = RecommendationLog.objects.create(
        kind=kind,
        fallback=fallback or "",
        model_version=model if fallback is None else "",
        arm=arm or "",
        products=[item.product.pk for item in items],
        sources=[item.source for item in items],
        **asked,
    )
    return row.rec_id


def _positions(product_ids: np.ndarray) -> dict[int, int]:
    return {int(p): i for i, p in enumerate(product_ids)}


def reset_serving_cache() -> None:
    """Forget the process's loaded model and cached policies (tests; after an activation elsewhere)."""
    with _LOCK:
        _CACHE.clear()
        _CACHE.update(model_id=None, served=None, checked_at=0.0)
    experiments.reset_cache()


def repeat_allowed(category_path: str, policies: list[tuple[str, bool]]) -> bool:
    """Whether a product of ``category_path`` may be recommended again: the longest matching policy decides."""
    best, allowed = -1, False
    for prefix, allow in policies:
        if (not prefix or category_path == prefix or category_path.startswith(prefix + "/")) and len(prefix) > best:
            best, allowed = len(prefix), allow
    return allowed


def _category_q(category: str | None, prefix: str = "") -> Q:
    """Products in ``category`` or below it (``prefix`` reaches the product through a relation)."""
    if not category:
        return Q()
    category = category.strip("/")
    return Q(**{f"{prefix}category_path": category}) | Q(**{f"{prefix}category_path__startswith": category + "/"})


def customer_events(*, external_id: str, limit: int = HISTORY_EVENTS) -> list[tuple[int, str, float]]:
    """Return the customer's newest events (product id, type, unix time), newest first; returns left out."""
    rows = (
        Event.objects.filter(customer__external_id=external_id)
        .exclude(type__in=IGNORED)
        .order_by("-timestamp", "-id")
        .values_list("product_id", "type", "timestamp")[:limit]
    )
    return [(pid, kind, ts.timestamp()) for pid, kind, ts in rows]


def consumed_products(*, external_id: str) -> set[int]:
    """Every product the customer bought or rated (all of their history, not only the newest events)."""
    rows = Event.objects.filter(customer__external_id=external_id, type__in=CONSUMED).order_by()
    return set(rows.values_list("product_id", flat=True).distinct())


def _cached(key: str, compute):
    """Return a small per-process value re-read at most every ``ACTIVE_CHECK_SECONDS`` (policies, new products)."""
    now = time.monotonic()
    hit = _CACHE.get(key)
    if hit is None or now - hit[0] >= ACTIVE_CHECK_SECONDS:
        hit = _CACHE[key] = (now, compute())
    return hit[1]


def repeat_policies() -> list[tuple[str, bool]]:
    """The operator's repeat policies (cached briefly)."""
    return _cached("policies", lambda: list(RepeatPolicy.objects.values_list("category_path", "allow_repeats")))


def _popular_ids(limit: int, category: str | None) -> list[int]:
    """Product ids by recent popularity: the active model's (each part of the catalogue on its own
    clock), else distinct customers over the last ``POPULAR_DAYS`` days before the newest event."""
    served = served_model()
    if served is not None:
        positions = np.arange(len(served.product_ids))
        if category:
            in_category = Product.objects.filter(_category_q(category)).values_list("id", flat=True)
            positions = np.asarray(sorted(served.position[p] for p in in_category if p in served.position), dtype=int)
        order = positions[np.argsort(-served.model.popularity[positions], kind="stable")]
        return [int(served.product_ids[i]) for i in order[:limit]]
    newest = Event.objects.aggregate(newest=Max("timestamp"))["newest"]
    if newest is None:
        return []
    return list(
        Event.objects.filter(timestamp__gte=newest - timedelta(days=POPULAR_DAYS), product__in_stock=True)
        .filter(_category_q(category, "product__"))
        .values("product_id")
        .annotate(n=Count("customer", distinct=True))
        .order_by("-n", "product_id")
        .values_list("product_id", flat=True)[:limit]
    )


def popular_products(*, k: int, category: str | None = None, exclude: set[int] | None = None) -> list[Recommendation]:
    """Return the most popular in-stock products of the data's most recent window (optionally in a
    category); a quiet shop or a narrow category is filled with any in-stock products of it."""
    exclude = exclude or set()
    label = f"popular in {category}" if category else "popular right now"
    ranked = _popular_ids(k + len(exclude) + CANDIDATES, category)
    products = (
        Product.objects.only(*ANSWER_FIELDS)
        .filter(id__in=ranked, in_stock=True)
        .filter(_category_q(category))
        .in_bulk()
    )
    picked = [products[pid] for pid in ranked if pid in products and pid not in exclude][:k]
    if len(picked) < k:
        seen = {p.pk for p in picked} | exclude
        extra = Product.objects.filter(in_stock=True).filter(_category_q(category)).exclude(id__in=seen)
        picked += list(extra.order_by("id")[: k - len(picked)])
    return [Recommendation(p, 0.0, label, "popular") for p in picked]


def recommend_for_customer(*, external_id: str, k: int, category: str | None = None) -> dict[str, Any]:
    """ "For you": score every item from the customer's newest events with the active model
    (:func:`recommend.ml.rank_scores`, as ``evaluate recommend`` does).

    Excludes products the customer bought or rated (unless a RepeatPolicy allows repeats for their
    category) and out-of-stock products. A customer unknown or without events, or a shop without a
    trained model, gets popular-in-context products (``fallback`` says why).
    """
    events = customer_events(external_id=external_id)
    served, arm = serving_for(external_id)
    answer = {"customer": external_id, "arm": arm, "model": served.row.name if served is not None else ""}
    if not events or served is None:
        if not events:
            known_customer = Customer.objects.filter(external_id=external_id).exists()
            reason = "no_history" if known_customer else "unknown_customer"
        else:
            reason = "no_model"
        return {**answer, "fallback": reason, "items": popular_products(k=k, category=category)}
    items = answer_items(served, events, consumed_products(external_id=external_id), k=k, category=category)
    return {**answer, "fallback": None, "items": items}


def answer_items(
    served: ServedModel, events, consumed: set[int], *, k: int, category: str | None = None
) -> list[Recommendation]:
    """The for-you items for a customer's ``events`` (newest first) and ``consumed`` products: the model's,
    new products like the history's, then popular ones."""
    items = _model_items(served, events, consumed, k=k, category=category)
    items = _with_new_products(items, events, k=k, category=category, served=served, exclude=consumed)
    if len(items) < k:
        seen = {r.product.pk for r in items} | consumed
        items += popular_products(k=k - len(items), category=category, exclude=seen)
    return items[:k]


def _ranked_positions(
    served: ServedModel, history: ml.History, consumed: set[int], *, k: int, category: str | None, policies
) -> tuple[np.ndarray, np.ndarray]:
    """The model's best item positions for ``history`` (a few spare ones) and every item's score."""
    if any(allow for _, allow in policies):  # repeats may come back: filter them per product later
        excluded, spare = [], k + len(consumed) + CANDIDATES
    else:  # the common case: everything bought is masked before ranking
        excluded, spare = [served.position[p] for p in consumed if p in served.position], k + CANDIDATES
    scores = ml.rank_scores(served.model, [history], [np.asarray(excluded, dtype=np.int64)])[0]
    if category:
        in_category = Product.objects.filter(_category_q(category)).values_list("id", flat=True)
        mask = np.full(len(scores), -np.inf, dtype=np.float32)
        mask[[served.position[p] for p in in_category if p in served.position]] = 0.0
        scores = scores + mask
    top = np.argpartition(-scores, min(spare, len(scores) - 1))[:spare]
    order = top[np.lexsort((top, -scores[top]))]  # ties by position, as evaluate's stable sort
    return order[np.isfinite(scores[order])], scores


def _model_items(
    served: ServedModel, events, consumed: set[int], *, k: int, category: str | None
) -> list[Recommendation]:
    """The model's recommendations for the customer's events, each with the history item behind it."""
    known = [(served.position[pid], ts) for pid, _, ts in events if pid in served.position]
    if not known:
        return []
    history = ml.History.from_events([i for i, _ in known], [ts for _, ts in known])
    policies = repeat_policies()
    order, scores = _ranked_positions(served, history, consumed, k=k, category=category, policies=policies)
    ranked = [int(served.product_ids[i]) for i in order]
    reasons = dict(zip(ranked, _Explainer(served, history).many(order)))
    fetched = Product.objects.only(*ANSWER_FIELDS).in_bulk(set(ranked) | {b for b in reasons.values() if b is not None})
    verbs = {pid: kind for pid, kind, _ in reversed(events)}  # newest event type per product
    items: list[Recommendation] = []
    for i, pid in zip(order, ranked):
        product = fetched.get(pid)
        if product is None or not product.in_stock:
            continue
        if pid in consumed and not repeat_allowed(product.category_path, policies):
            continue
        because = reasons[pid]
        if because is not None:
            name = fetched[because].title if because in fetched else because
            reason = f"because you {VERBS.get(verbs[because], 'viewed')} {name}"
        else:
            reason = f"popular in {product.category_path}" if product.category_path else "popular right now"
        items.append(Recommendation(product, float(scores[i]), reason, "model"))
        if len(items) >= k:
            break
    return items


class _Explainer:
    """Finds the history item that contributes most to a recommended item (EASE + transitions)."""

    def __init__(self, served: ServedModel, history: ml.History):
        self.model = served.model.hybrid
        self.served = served
        self.history = history.newest()
        self.weights = np.exp(-self.history.steps / max(self.model.config.trans_tau, 1e-6))
        transitions = self.model.transitions
        self.transitions = transitions[self.history.items] if transitions.nnz else None

    def many(self, items: np.ndarray) -> list[int | None]:
        """Return, per item, the product id in the history behind it, or None when nothing in it is."""
        items = np.asarray(items, dtype=np.int64)
        if len(items) == 0:
            return []
        weights = self.weights[:, None]
        contrib = self.model.ease.take(self.history.items, items) * (0.2 + weights)
        if self.transitions is not None:
            contrib = contrib + self.transitions[:, items].toarray() * weights
        best = np.argmax(contrib, axis=0)
        values = contrib[best, np.arange(len(items))]
        ids = self.served.product_ids[self.history.items[best]]
        return [int(pid) if value > 0 else None for pid, value in zip(ids, values)]


def _with_new_products(
    items: list[Recommendation], events, *, k: int, category: str | None, served: ServedModel, exclude: set[int]
) -> list[Recommendation]:
    """Give up to a quarter of the slots to products the model has not seen (created after it was trained)
    whose text embedding is close to the customer's newest items (pgvector nearest neighbours)."""
    from backbone.services import get_active_version

    cutoff = served.row.created_at
    if not _cached(f"new-since-{served.row.pk}", lambda: Product.objects.filter(created_at__gt=cutoff).exists()):
        return items
    version = get_active_version()
    recent = [pid for pid, _, _ in events[:10]]
    rows = list(
        ProductEmbedding.objects.filter(version=version, product_id__in=recent).values_list("product_id", "embedding")
    )
    if not rows:
        return items
    titles = dict(Product.objects.filter(id__in=[pid for pid, _ in rows]).values_list("id", "title"))
    vectors = {pid: np.asarray(v, dtype=np.float32) for pid, v in rows}
    profile = np.mean(list(vectors.values()), axis=0)
    candidates = (
        ProductEmbedding.objects.filter(version=version, product__created_at__gt=cutoff, product__in_stock=True)
        .filter(_category_q(category, "product__"))
        .exclude(product_id__in=exclude)
        .annotate(distance=CosineDistance("embedding", profile))
        .order_by("distance")
        .select_related("product")[: max(1, k // 4)]
    )
    new = []
    for row in candidates:
        if row.product_id in served.position or 1 - row.distance < NEW_PRODUCT_MIN_SIMILARITY:
            continue
        mine = np.asarray(row.embedding, dtype=np.float32)
        nearest = max(vectors, key=lambda pid: float(vectors[pid] @ mine))
        reason = f"similar to {titles.get(nearest)}"
        new.append(Recommendation(row.product, float(1 - row.distance), reason, "new_product"))
    merged = list(items)
    for n, rec in enumerate(new):
        merged.insert(min(len(merged), 2 + 4 * n), rec)
    return merged[:k]


def similar_products(*, sku: str, k: int, mode: str = "similar") -> list[Recommendation]:
    """ "Similar" (EASE item weights blended with text-embedding similarity) or "bought together"
    (the products found in most baskets and sessions with it: co-occurrence only) for one product.

    A product the active model has not seen is "similar" through its text embedding (pgvector)
    and has nothing bought with it yet. Raises UnknownProduct.
    """
    product = Product.objects.filter(sku=sku).first()
    if product is None:
        raise UnknownProduct(f"unknown product SKU {sku!r}")
    served = served_model()
    known = served is not None and product.pk in served.position
    if mode == "bought_together":
        return _bought_together(served, product, k) if known else []
    if not known:
        return _similar_by_text(product, k)
    model = served.model.hybrid
    i = served.position[product.pk]
    scores = _standardised(model.ease.row(i))
    if model.vectors is not None and np.any(model.vectors[i]):
        scores += 0.5 * _standardised(model.vectors @ model.vectors[i])
    scores[i] = -np.inf
    order = np.argsort(-scores, kind="stable")[: k + CANDIDATES]
    return _in_stock(served, order, scores, f"similar to {product.title}", k)


def _standardised(part: np.ndarray) -> np.ndarray:
    std = part.std()
    return ((part - part.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def _bought_together(served: ServedModel, product: Product, k: int) -> list[Recommendation]:
    """The products in most baskets with ``product`` (the model's co-occurrence counts), in stock."""
    row = served.model.together[served.position[product.pk]]
    order = row.indices[np.argsort(-row.data, kind="stable")][: k + CANDIDATES]
    scores = np.zeros(served.model.n_items, dtype=np.float32)
    scores[row.indices] = row.data
    return _in_stock(served, order, scores, f"often bought with {product.title}", k)


def _in_stock(served: ServedModel, order: np.ndarray, scores: np.ndarray, reason: str, k: int) -> list[Recommendation]:
    """The first ``k`` in-stock products of the model positions ``order``, each with its score."""
    ranked = [int(served.product_ids[j]) for j in order]
    products = Product.objects.only(*ANSWER_FIELDS).filter(id__in=ranked, in_stock=True).in_bulk()
    out = [
        Recommendation(products[pid], float(scores[j]), reason, "model")
        for j, pid in zip(order, ranked)
        if pid in products
    ]
    return out[:k]


def _similar_by_text(product: Product, k: int) -> list[Recommendation]:
    """Nearest products by the active backbone's text embedding (pgvector, cosine)."""
    from backbone.services import get_active_version

    version = get_active_version()
    mine = ProductEmbedding.objects.filter(version=version, product=product).values_list("embedding", flat=True).first()
    if mine is None:
        return popular_products(k=k, category=product.category_path or None, exclude={product.pk})
    rows = (
        ProductEmbedding.objects.filter(version=version, product__in_stock=True)
        .exclude(product=product)
        .annotate(distance=CosineDistance("embedding", mine))
        .order_by("distance")
        .select_related("product")[:k]
    )
    return [Recommendation(r.product, float(1 - r.distance), f"similar to {product.title}", "text") for r in rows]
