"""Recommendation operations: training and activating models, and serving "for you", "similar",
"bought together" and "popular" from the active model plus the customer's newest events.

Serving reads the customer's latest events from the database at request time, so a new event
changes the next answer without a retrain. Products the active model has never seen (added after
training) are found through their text embeddings in pgvector (the shared backbone).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from pgvector.django import CosineDistance

from catalog.models import Customer, Event, Product, ProductEmbedding
from recommend.ml import History, HybridConfig, HybridModel, RankingMetrics, TrainSet
from recommend.models import RecommenderModel, RepeatPolicy

logger = logging.getLogger(__name__)

HISTORY_EVENTS = 200  # newest events of a customer that feed a recommendation
CONSUMED = (Event.Type.PURCHASE, Event.Type.RATING)  # "already has it": excluded unless repeats are allowed
IGNORED = (Event.Type.RETURN,)
VERBS = {"view": "viewed", "click": "viewed", "cart": "added", "purchase": "bought", "rating": "rated"}
MAX_K = 100
CANDIDATES = 40  # spare candidates fetched beyond k, for out-of-stock ones
NEW_PRODUCT_MIN_SIMILARITY = 0.5
ACTIVE_CHECK_SECONDS = 2.0
POPULAR_DAYS = 30

_LOCK = threading.RLock()
_CACHE: dict[str, Any] = {"model_id": None, "served": None, "checked_at": 0.0}


class RecommendError(Exception):
    """A request cannot be served as asked (unknown product, nothing trained for it)."""


class UnknownProduct(RecommendError):
    """No product with this SKU."""


@dataclass
class ServedModel:
    """An active model loaded for serving: the model, its product ids and their positions."""

    row: RecommenderModel
    model: HybridModel
    product_ids: np.ndarray
    position: dict[int, int]


@dataclass
class Recommendation:
    """One recommended product with its score and a human-readable reason."""

    product: Product
    score: float
    reason: str
    source: str  # "model", "new_product", "popular"


# --- training -------------------------------------------------------------------------------


def start_training(
    *, parameters: dict[str, Any] | None = None, activate: bool = True, enqueue: bool = True
) -> RecommenderModel:
    """Create a queued model row and enqueue ``recommend.train`` on commit (unless ``enqueue`` is false:
    the caller then runs :func:`train_model` itself, as ``manage.py train_recommender`` does).

    Raises RecommendError for unknown parameters. Side effects: one RecommenderModel row, one Celery
    message on the ``training`` queue.
    """
    params = dict(parameters or {})
    unknown = set(params) - {f for f in HybridConfig.__dataclass_fields__} - {"holdout_customers"}
    if unknown:
        raise RecommendError(f"unknown parameters: {sorted(unknown)}")
    with transaction.atomic():
        row = RecommenderModel.objects.create(
            name=timezone.now().strftime("rec-%Y%m%d-%H%M%S-%f"), parameters=params, activate=activate
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue_training(row.pk))
    return row


def _enqueue_training(model_id: int) -> None:
    from recommend.tasks import train

    train.delay(model_id)


def load_training_data(*, limit_customers: int | None = None) -> tuple[TrainSet, list[int], int]:
    """Read every identified customer's events (returns ignored) into a TrainSet keyed by product id.

    Anonymous events with a session count as extra baskets. Returns (train set, product ids, events).
    """
    rows = (
        Event.objects.exclude(type__in=IGNORED)
        .order_by()
        .values_list("customer_id", "product_id", "timestamp", "session")
    )
    by_customer: dict[int, list[tuple[float, int]]] = {}
    anonymous: dict[str, set[int]] = {}
    n_events = 0
    for customer_id, product_id, timestamp, session in rows.iterator(chunk_size=20000):
        n_events += 1
        if customer_id is None:
            if session:
                anonymous.setdefault(session, set()).add(product_id)
            continue
        by_customer.setdefault(customer_id, []).append((timestamp.timestamp(), product_id))
    if limit_customers:
        by_customer = dict(list(by_customer.items())[:limit_customers])
    product_ids = sorted(Product.objects.values_list("id", flat=True))
    position = {pid: i for i, pid in enumerate(product_ids)}
    histories = [
        History.from_events([position[p] for _, p in events], [t for t, _ in events]) for events in by_customer.values()
    ]
    extra = [np.asarray([position[p] for p in b], dtype=np.int64) for b in anonymous.values() if len(b) > 1]
    train = TrainSet(items=[str(p) for p in product_ids], histories=histories, extra_baskets=extra)
    train.item_vectors = product_vectors(product_ids)
    return train, product_ids, n_events


def product_vectors(product_ids: list[int]) -> np.ndarray | None:
    """Return the active backbone's embeddings of these products (zeros where missing), or None if none exist."""
    from backbone.services import get_active_version

    version = get_active_version()
    vectors = np.zeros((len(product_ids), 384), dtype=np.float32)
    position = {pid: i for i, pid in enumerate(product_ids)}
    found = 0
    for pid, vector in ProductEmbedding.objects.filter(version=version).values_list("product_id", "embedding"):
        if pid in position:
            vectors[position[pid]] = np.asarray(vector, dtype=np.float32)
            found += 1
    return vectors if found else None


def holdout_metrics(*, train: TrainSet, config: HybridConfig, max_customers: int = 1000) -> dict[str, Any]:
    """Leave-last-step-out metrics of ``config`` on ``train`` (refits without each customer's newest step)."""
    rng = np.random.default_rng(7)
    eligible = [i for i, h in enumerate(train.histories) if len(np.unique(h.steps)) >= 2]
    chosen = (
        set(rng.choice(eligible, size=min(max_customers, len(eligible)), replace=False).tolist()) if eligible else set()
    )
    histories, targets = [], []
    fit_histories = []
    for i, h in enumerate(train.histories):
        if i in chosen:
            keep = h.steps > 0
            cut = History(h.items[keep], h.steps[keep] - 1, None if h.times is None else h.times[keep])
            target = set(h.items[~keep].tolist()) - set(cut.items.tolist())
            fit_histories.append(cut)
            if target:
                histories.append(cut)
                targets.append(target)
        else:
            fit_histories.append(h)
    if not histories:
        return {"n": 0}
    fit_set = TrainSet(train.items, fit_histories, train.extra_baskets, train.item_vectors)
    model = HybridModel(config).fit(fit_set)
    metrics = RankingMetrics(n_items=train.n_items)
    for start in range(0, len(histories), 256):
        scores = model.score(histories[start : start + 256])
        for j, h in enumerate(histories[start : start + 256]):
            metrics.add(scores[j], targets[start + j], h.items)
    return metrics.result()


def claim_training(*, model_id: int) -> bool:
    """Atomically move a queued model to training; False when someone else has it (or it is gone)."""
    return bool(
        RecommenderModel.objects.filter(pk=model_id, state=RecommenderModel.State.QUEUED).update(
            state=RecommenderModel.State.TRAINING
        )
    )


def train_model(*, model_id: int) -> RecommenderModel | None:
    """Claim and train one queued model from the events in the database; save it; activate if asked.

    Returns None when the row was already claimed. Side effects: a folder under
    ``MODELS_DIR/recommend/``, updates to the row, and possibly a new active model.
    """
    if not claim_training(model_id=model_id):
        logger.info("recommender %s is not queued any more; skipping", model_id)
        return None
    row = RecommenderModel.objects.get(pk=model_id)
    try:
        started = time.monotonic()
        params = row.parameters or {}
        config = HybridConfig(**{k: v for k, v in params.items() if k in HybridConfig.__dataclass_fields__})
        train, product_ids, n_events = load_training_data()
        if not any(len(h.items) for h in train.histories):
            raise RecommendError("no customer events to train on")
        metrics = {
            "model": holdout_metrics(train=train, config=config, max_customers=params.get("holdout_customers", 1000))
        }
        model = HybridModel(config).fit(train)
        folder = Path(settings.MODELS_DIR) / "recommend" / row.name
        model.save(folder)
        (folder / "items.json").write_text(json.dumps(product_ids))
        metrics["seconds"] = round(time.monotonic() - started, 1)
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    except Exception as exc:
        logger.exception("training recommender %s failed", model_id)
        RecommenderModel.objects.filter(pk=model_id).update(
            state=RecommenderModel.State.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        return RecommenderModel.objects.get(pk=model_id)
    RecommenderModel.objects.filter(pk=model_id).update(
        state=RecommenderModel.State.READY,
        path=str(folder),
        metrics=metrics,
        n_items=len(product_ids),
        n_customers=len(train.histories),
        n_events=n_events,
        finished_at=timezone.now(),
    )
    if row.activate:
        activate_model(model_id=model_id)
    return RecommenderModel.objects.get(pk=model_id)


def activate_model(*, model_id: int) -> RecommenderModel:
    """Make a ready (or retired) model the one that serves; retire the previous one, in one transaction."""
    with transaction.atomic():
        row = RecommenderModel.objects.select_for_update().get(pk=model_id)
        if row.state not in (
            RecommenderModel.State.READY,
            RecommenderModel.State.RETIRED,
            RecommenderModel.State.ACTIVE,
        ):
            raise RecommendError(f"model {row.name} is {row.state}; only a trained model can be activated")
        RecommenderModel.objects.filter(state=RecommenderModel.State.ACTIVE).exclude(pk=model_id).update(
            state=RecommenderModel.State.RETIRED
        )
        RecommenderModel.objects.filter(pk=model_id).update(
            state=RecommenderModel.State.ACTIVE, activated_at=timezone.now()
        )
    _CACHE["checked_at"] = 0.0
    return RecommenderModel.objects.get(pk=model_id)


# --- serving --------------------------------------------------------------------------------


def served_model() -> ServedModel | None:
    """Return the active model loaded once per process (re-checked every ``ACTIVE_CHECK_SECONDS``), or None."""
    now = time.monotonic()
    with _LOCK:
        if now - _CACHE["checked_at"] < ACTIVE_CHECK_SECONDS:
            return _CACHE["served"]
        row = RecommenderModel.objects.filter(state=RecommenderModel.State.ACTIVE).first()
        if row is None:
            _CACHE.update(model_id=None, served=None, checked_at=now)
            return None
        if _CACHE["model_id"] != row.pk:
            folder = Path(row.path)
            product_ids = np.asarray(json.loads((folder / "items.json").read_text()), dtype=np.int64)
            served = ServedModel(
                row=row,
                model=HybridModel.load(folder),
                product_ids=product_ids,
                position={int(p): i for i, p in enumerate(product_ids)},
            )
            _CACHE.update(model_id=row.pk, served=served)
        _CACHE["checked_at"] = now
        return _CACHE["served"]


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


def popular_products(*, k: int, category: str | None = None, exclude: set[int] | None = None) -> list[Recommendation]:
    """Return the most popular in-stock products (optionally in a category): the active model's recent
    popularity when there is one, else distinct customers over the last ``POPULAR_DAYS`` days."""
    exclude = exclude or set()
    served = served_model()
    label = f"popular in {category}" if category else "popular right now"
    if served is not None:
        order = np.argsort(-served.model.popularity, kind="stable")
        ranked = [int(served.product_ids[i]) for i in order[: k + len(exclude) + CANDIDATES]]
    else:
        since = timezone.now() - timedelta(days=POPULAR_DAYS)
        ranked = list(
            Event.objects.filter(timestamp__gte=since, product__in_stock=True)
            .filter(_category_q(category, "product__"))
            .values("product_id")
            .annotate(n=Count("customer", distinct=True))
            .order_by("-n", "product_id")
            .values_list("product_id", flat=True)[: k + len(exclude) + CANDIDATES]
        )
    products = Product.objects.filter(id__in=ranked, in_stock=True).filter(_category_q(category)).in_bulk()
    picked = [products[pid] for pid in ranked if pid in products and pid not in exclude][:k]
    if len(picked) < k:  # a quiet shop or a narrow category: fill with any in-stock products of the category
        seen = {p.pk for p in picked} | exclude
        extra = Product.objects.filter(in_stock=True).filter(_category_q(category)).exclude(id__in=seen)
        picked += list(extra.order_by("id")[: k - len(picked)])
    return [Recommendation(p, 0.0, label, "popular") for p in picked]


def recommend_for_customer(*, external_id: str, k: int, category: str | None = None) -> dict[str, Any]:
    """ "For you": score every item from the customer's newest events with the active model.

    Excludes products the customer bought or rated (unless a RepeatPolicy allows repeats for their
    category) and out-of-stock products. A customer unknown or without events, or a shop without a
    trained model, gets popular-in-context products (``fallback`` says why).
    """
    events = customer_events(external_id=external_id)
    served = served_model()
    if not events or served is None:
        if not events:
            known_customer = Customer.objects.filter(external_id=external_id).exists()
            reason = "no_history" if known_customer else "unknown_customer"
        else:
            reason = "no_model"
        return {"customer": external_id, "fallback": reason, "items": popular_products(k=k, category=category)}
    policies = repeat_policies()
    consumed = {pid for pid, kind, _ in events if kind in CONSUMED}
    known = [(served.position[pid], kind, ts, pid) for pid, kind, ts in events if pid in served.position]
    items: list[Recommendation] = []
    if known:
        history = History.from_events([i for i, *_ in known], [ts for _, _, ts, _ in known])
        scores = served.model.score([history])[0]
        if category:
            in_category = Product.objects.filter(_category_q(category)).values_list("id", flat=True)
            mask = np.full(len(scores), -np.inf, dtype=np.float32)
            idx = [served.position[p] for p in in_category if p in served.position]
            mask[idx] = 0.0
            scores = scores + mask
        if not any(allow for _, allow in policies):  # the common case: mask bought items before fetching
            scores[[served.position[p] for p in consumed if p in served.position]] = -np.inf
            spare = k + CANDIDATES
        else:
            spare = k + len(consumed) + CANDIDATES
        top = np.argpartition(-scores, min(spare, len(scores) - 1))[:spare]
        order = top[np.argsort(-scores[top], kind="stable")]
        order = order[np.isfinite(scores[order])]
        ranked = [int(served.product_ids[i]) for i in order]
        reasons = dict(zip(ranked, _Explainer(served, history).many(order)))
        wanted = set(ranked) | {b for b in reasons.values() if b is not None}
        fetched = Product.objects.in_bulk(wanted)  # one query: candidates and the items named in reasons
        names = {pid: p.title for pid, p in fetched.items()}
        verbs = {pid: kind for pid, kind, _ in reversed(events)}  # newest event type per product
        for i, pid in zip(order, ranked):
            product = fetched.get(pid)
            if product is None or not product.in_stock:
                continue
            if pid in consumed and not repeat_allowed(product.category_path, policies):
                continue
            because = reasons[pid]
            reason = (
                f"because you {VERBS.get(verbs[because], 'viewed')} {names.get(because, because)}"
                if because is not None
                else (f"popular in {product.category_path}" if product.category_path else "popular right now")
            )
            items.append(Recommendation(product, float(scores[i]), reason, "model"))
            if len(items) >= k:
                break
    items = _with_new_products(items, events, k=k, category=category, served=served, exclude=consumed)
    if len(items) < k:
        seen = {r.product.pk for r in items} | consumed
        items += popular_products(k=k - len(items), category=category, exclude=seen)
    return {"customer": external_id, "fallback": None, "items": items[:k]}


class _Explainer:
    """Finds the history item that contributes most to a recommended item (EASE + transitions)."""

    def __init__(self, served: ServedModel, history: History):
        model = served.model
        model = getattr(model, "hybrid", model)
        self.served = served
        self.history = history
        self.weights = np.exp(-history.steps / max(model.config.trans_tau, 1e-6))
        self.model = model
        self.transitions = model.transitions[history.items] if model.transitions.nnz else None

    def __call__(self, item: int) -> int | None:
        """Return the product id in the history behind ``item``, or None when nothing in it is."""
        return self.many(np.asarray([item]))[0]

    def many(self, items: np.ndarray) -> list[int | None]:
        """:meth:`__call__` for many items at once (one dense slice instead of a sparse column per item)."""
        items = np.asarray(items, dtype=np.int64)
        if len(items) == 0:
            return []
        weights = self.weights[:, None]
        contrib = self.model.ease[np.ix_(self.history.items, items)] * (0.2 + weights)
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
    profile = np.mean([np.asarray(v, dtype=np.float32) for _, v in rows], axis=0)
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
        vectors = {pid: np.asarray(v, dtype=np.float32) for pid, v in rows}
        nearest = max(vectors, key=lambda pid: float(vectors[pid] @ np.asarray(row.embedding, dtype=np.float32)))
        new.append(
            Recommendation(row.product, float(1 - row.distance), f"similar to {titles.get(nearest)}", "new_product")
        )
    if not new:
        return items
    merged = list(items)
    for n, rec in enumerate(new):
        merged.insert(min(len(merged), 2 + 4 * n), rec)
    return merged[:k]


def similar_products(*, sku: str, k: int, mode: str = "similar") -> list[Recommendation]:
    """ "Similar" (co-occurrence blended with text-embedding similarity) or "bought together"
    (same-basket / next-item co-occurrence blended with a little text similarity) for one product.

    A product the active model has not seen is served from its text embedding (pgvector).
    Raises UnknownProduct.
    """
    product = Product.objects.filter(sku=sku).first()
    if product is None:
        raise UnknownProduct(f"unknown product SKU {sku!r}")
    served = served_model()
    if served is None or product.pk not in served.position:
        return _similar_by_text(product, k)
    model = served.model
    i = served.position[product.pk]
    parts = []
    if mode == "bought_together":
        if model.transitions.nnz:
            parts.append((1.0, np.asarray(model.transitions[i].todense()).ravel()))
            col = np.asarray(model.transitions[:, i].todense()).ravel()
            parts.append((0.5, col))
        parts.append((0.5, model.ease[i]))
        text_weight = 0.1
        label = f"often bought with {product.title}"
    else:
        parts.append((1.0, model.ease[i]))
        text_weight = 0.5
        label = f"similar to {product.title}"
    if model.vectors is not None and np.any(model.vectors[i]):
        parts.append((text_weight, model.vectors @ model.vectors[i]))
    scores = np.zeros(model.n_items, dtype=np.float32)
    for weight, part in parts:
        std = part.std()
        scores += weight * (part - part.mean()) / (std if std > 0 else 1.0)
    scores[i] = -np.inf
    order = np.argsort(-scores)[: k + CANDIDATES]
    ranked = [int(served.product_ids[j]) for j in order]
    products = Product.objects.filter(id__in=ranked, in_stock=True).in_bulk()
    out = [
        Recommendation(products[pid], float(scores[j]), label, "model")
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
