"""Search operations: hybrid product search, suggestions, search and click logging.

The candidates of :func:`search.retrieval.retrieve` (full text, trigram and dense legs over the
live catalogue) are scored by the active learned ranker (:class:`search.models.SearchRanker`)
when it was trained for the active backbone version, else by :func:`search.ml.fusion_scores`
(title BM25, dense cosine and trigram similarity, summed). Training lives in
:mod:`search.training`.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import Count, Q
from django.dispatch import receiver

from backbone import errors, experiments, lifecycle
from backbone.recheck import Rechecked
from search import ml
from search.models import SearchClick, SearchQueryLog, SearchRanker
from search.retrieval import (
    PRODUCT_TRIGRAM_TEXT,
    TRIGRAM_THRESHOLD,
    Retrieved,
    SearchFilters,
    catalogue_vocabulary,
    correct_query,
    reset_vocabulary,
    retrieve,
)

logger = logging.getLogger(__name__)


MAX_RESULTS = 250
SIMILAR_CHARS = 64  # of a suggest input, matched by trigram similarity (the whole of it by prefix)
SORTS = ("relevance", "price_asc", "price_desc", "newest")
MODES = ("hybrid", "lexical")
PRICE_BUCKETS = (0, 10, 25, 50, 100, 250, 500, 1000)
NO_FACETS: dict[str, list] = {"category": [], "brand": [], "price": []}


@dataclass
class SearchHit:
    product_id: int
    sku: str
    title: str
    brand: str
    category_path: str
    price: Decimal | None
    in_stock: bool
    score: float
    matched_by: str


@dataclass
class SearchResult:
    query: str
    corrected: str
    total: int
    page: int
    page_size: int
    sort: str
    ranker: str
    hits: list[SearchHit]
    facets: dict[str, Any]
    ranker_name: str = ""
    arm: str | None = None
    log_id: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


# --- the learned ranker ------------------------------------------------------------------------

_LOADED_RANKERS: dict[int, ml.Ranker | None] = {}
_RANKER_LOCK = threading.Lock()
QUERY_VECTORS_KEPT = 4096  # per process, newest used: popular queries repeat (1.5 kB each)
_QUERY_VECTORS: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
_VECTORS_LOCK = threading.Lock()


def reset_caches() -> None:
    """Forget the per-process vocabulary, loaded rankers and query vectors (tests; after swapping model files)."""
    reset_vocabulary()
    with _RANKER_LOCK:
        _LOADED_RANKERS.clear()
    forget_active_ranker()
    with _VECTORS_LOCK:
        _QUERY_VECTORS.clear()


RANKER_CHECK_SECONDS = 2.0  # how often a process re-reads which ranker row is active
# The active SearchRanker row (its serving fields only), re-read every RANKER_CHECK_SECONDS per
# process, as the active backbone version is; an activation in this process is seen at once.
ACTIVE_RANKER = Rechecked(
    lambda: (
        SearchRanker.objects.filter(state=SearchRanker.State.ACTIVE).only("name", "path", "backbone_version").first()
    ),
    RANKER_CHECK_SECONDS,
)


@receiver(lifecycle.activated, sender=SearchRanker)
def forget_active_ranker(**_) -> None:
    """Re-read the active ranker row at the next search."""
    ACTIVE_RANKER.forget()


def serving_ranker(version) -> ml.Ranker | None:
    """Return the active ranker's model when it was trained for backbone ``version``, else None.

    The model is loaded once per process. A ranker whose folder cannot be read is logged and not used.
    """
    row = ACTIVE_RANKER.get()
    return _loaded(row) if row is not None and row.backbone_version_id == version.pk else None


def ranker_for(version, session: str) -> tuple[ml.Ranker | None, str, str | None]:
    """(the ranker that serves ``session``, its row's name ("" for none), its A/B arm): a running
    experiment's challenger in arm B (``backbone.experiments``), else the active ranker of ``version``."""
    challenger, arm = experiments.choose("search", session)
    row = challenger if challenger is not None else ACTIVE_RANKER.get()
    if row is None or row.backbone_version_id != version.pk:
        return None, "", arm
    return _loaded(row), row.name, arm


def _loaded(row: SearchRanker) -> ml.Ranker | None:
    with _RANKER_LOCK:
        if row.pk not in _LOADED_RANKERS:
            if len(_LOADED_RANKERS) >= 2:  # the active ranker and an A/B challenger
                _LOADED_RANKERS.clear()
            try:
                _LOADED_RANKERS[row.pk] = ml.Ranker.load(Path(row.path))
            except (OSError, ValueError):
                logger.exception("search ranker %s cannot be loaded from %r; ranking without it", row.name, row.path)
                _LOADED_RANKERS[row.pk] = None
        return _LOADED_RANKERS[row.pk]


def score_candidates(retrieved: Retrieved, ranker: ml.Ranker | None) -> tuple[dict[int, float], str]:
    """Return product id -> relevance score, and which ranker produced it ('learned' or 'fusion')."""
    if ranker is not None:
        scores, name = ranker.predict(retrieved.features), "learned"
    else:
        scores, name = ml.fusion_scores(retrieved.features), "fusion"
    return {c.key: float(s) for c, s in zip(retrieved.candidates, scores, strict=True)}, name


def matched_by(candidate: ml.Candidate) -> str:
    """Return which kind of leg found the candidate: 'lexical', 'semantic' or 'both'."""
    lexical = "lexical" in candidate.ranks or "trigram" in candidate.ranks
    semantic = "dense" in candidate.ranks
    return "both" if lexical and semantic else ("lexical" if lexical else "semantic")


FACET_VALUES = 20  # the most frequent categories and brands shown


def compute_facets(products: dict[int, dict[str, Any]], product_ids: list[int]) -> dict[str, Any]:
    """Return category, brand and price-bucket counts over ``product_ids`` (the whole match set),
    from the rows the candidate query read (no statement of its own)."""
    rows = [products[pid] for pid in product_ids]
    facets: dict[str, Any] = {}
    for name, key in (("category", "category_path"), ("brand", "brand")):
        counts = Counter(row[key] for row in rows if row[key])
        top = sorted((-count, value) for value, count in counts.items())[:FACET_VALUES]
        facets[name] = [{"value": value, "count": -count} for count, value in top]
    buckets = Counter(bisect.bisect_right(PRICE_BUCKETS, row["price"]) for row in rows if row["price"] is not None)
    facets["price"] = [
        {"min": PRICE_BUCKETS[b - 1], "max": PRICE_BUCKETS[b] if b < len(PRICE_BUCKETS) else None, "count": count}
        for b, count in sorted(buckets.items())
    ]
    return facets


def get_active_version():
    """Return the active backbone version."""
    from backbone.services import get_active_version as active

    return active()


def encode_query(text: str) -> tuple[Any, np.ndarray | None]:
    """Return (active version, query vector); the vector is None when the text is blank.

    Vectors are kept per (version, text), the last QUERY_VECTORS_KEPT used (read-only arrays).
    """
    from backbone.services import active_serving_encoder

    version, encoder = active_serving_encoder()
    if not text.strip():
        return version, None
    key = (version.pk, text)
    with _VECTORS_LOCK:
        vector = _QUERY_VECTORS.get(key)
        if vector is not None:
            _QUERY_VECTORS.move_to_end(key)
            return version, vector
    vector = encoder.encode([text])[0]
    vector.setflags(write=False)
    with _VECTORS_LOCK:
        _QUERY_VECTORS[key] = vector
        while len(_QUERY_VECTORS) > QUERY_VECTORS_KEPT:
            _QUERY_VECTORS.popitem(last=False)
    return version, vector


# --- search -----------------------------------------------------------------------------------


@dataclass
class Ranked:
    """The match set in relevance order, with each product's score and candidate."""

    ids: list[int]
    scores: dict[int, float]
    candidates: dict[int, ml.Candidate]
    products: dict[int, dict[str, Any]]  # a hit's fields (``retrieval.PRODUCT_FIELDS``)
    ranker: str
    ranker_name: str = ""  # the learned ranker's row, when one ranked
    arm: str | None = None  # of a running A/B test of rankers


def rank_products(
    cursor, *, query: str, corrected: str, vector, version, filters: SearchFilters, mode: str, session: str = ""
) -> Ranked:
    """Retrieve and score the match set of ``query`` (call inside a transaction).

    ``hybrid``: three legs, then the learned ranker of ``version`` (an A/B challenger's for a session
    in arm B: :func:`ranker_for`) or the fusion scores; ``lexical``: the full-text leg alone in
    ``ts_rank`` order (no model).
    """
    hybrid = mode == "hybrid"
    retrieved = retrieve(
        cursor, query=query, corrected=corrected, vector=vector, version_id=version.pk, filters=filters,
        trigram=hybrid,
    )  # fmt: skip
    name, arm = "", None
    if hybrid:
        model, name, arm = ranker_for(version, session)
        scores, ranker = score_candidates(retrieved, model)
    else:
        ranking = retrieved.legs["lexical"]
        scores, ranker = {pid: float(len(ranking) - i) for i, pid in enumerate(ranking)}, "lexical"
    ids = sorted(scores, key=lambda pid: (-scores[pid], pid))[:MAX_RESULTS]
    name = name if ranker == "learned" else ""
    return Ranked(ids, scores, {c.key: c for c in retrieved.candidates}, retrieved.products, ranker, name, arm)


def sort_ids(ids: list[int], products: dict[int, dict[str, Any]], sort: str) -> list[int]:
    """Return ``ids`` (relevance order) in the order ``sort`` asks for; ties keep id order."""
    if sort == "price_asc":
        return sorted(ids, key=lambda pid: (products[pid]["price"] is None, products[pid]["price"] or 0, pid))
    if sort == "price_desc":
        return sorted(ids, key=lambda pid: (products[pid]["price"] is None, -(products[pid]["price"] or 0), pid))
    if sort == "newest":
        return sorted(ids, key=lambda pid: (-products[pid]["created_at"].timestamp(), pid))
    return list(ids)


def page_hits(ids: list[int], ranked: Ranked) -> list[SearchHit]:
    """Return one hit per id, with the product's fields, its score and the legs that found it."""
    products = ranked.products
    return [
        SearchHit(
            product_id=pid,
            sku=products[pid]["sku"],
            title=products[pid]["title"],
            brand=products[pid]["brand"],
            category_path=products[pid]["category_path"],
            price=products[pid]["price"],
            in_stock=products[pid]["in_stock"],
            score=round(ranked.scores[pid], 6),
            matched_by=matched_by(ranked.candidates[pid]),
        )
        for pid in ids
    ]


def search_products(
    *,
    query: str,
    filters: SearchFilters | None = None,
    sort: str = "relevance",
    page: int = 1,
    page_size: int = 20,
    session: str = "",
    mode: str = "hybrid",
    facets: bool = True,
    log: bool = True,
) -> SearchResult:
    """Rank products for ``query`` under ``filters``; facets over the whole match set; log the search.

    The match set is every candidate of the three legs (up to 250 products) after filters.
    ``mode="lexical"`` is the PostgreSQL full-text-only path (no query encoding, no trigram or
    dense leg, ``ts_rank`` order): the baseline of the latency bench. ``facets=False`` skips the
    facet counts. Side effects: one SearchQueryLog row when ``log`` (its id is ``log_id`` for click logging).
    """
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {SORTS}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    started = time.perf_counter()
    filters = filters or SearchFilters()
    corrected, encoded = correct_query(query)
    version, vector = encode_query(encoded) if mode == "hybrid" else (get_active_version(), None)
    timings = {"encode": round((time.perf_counter() - started) * 1000, 2)}
    with transaction.atomic(), connection.cursor() as cursor:
        ranked = rank_products(
            cursor, query=query, corrected=corrected, vector=vector, version=version, filters=filters, mode=mode,
            session=session,
        )  # fmt: skip
        timings["retrieve_rank"] = round((time.perf_counter() - started) * 1000 - timings["encode"], 2)
    facet_counts = compute_facets(ranked.products, ranked.ids) if facets else dict(NO_FACETS)
    ordered = sort_ids(ranked.ids, ranked.products, sort)
    start = (page - 1) * page_size
    timings["total"] = round((time.perf_counter() - started) * 1000, 2)
    result = SearchResult(
        query=query, corrected=corrected, total=len(ordered), page=page, page_size=page_size, sort=sort,
        ranker=ranked.ranker, ranker_name=ranked.ranker_name, arm=ranked.arm,
        hits=page_hits(ordered[start : start + page_size], ranked),
        facets=facet_counts, timings_ms=timings,
    )  # fmt: skip
    if log:
        result.log_id = log_search(result=result, filters=filters, version_name=version.name, session=session)
    return result


# --- logging and analytics ----------------------------------------------------------------------


def normalize_query(text: str) -> str:
    """Return the form under which two searches count as the same query (case, spacing)."""
    return " ".join(text.casefold().split())[:500]


def log_search(*, result: SearchResult, filters: SearchFilters, version_name: str, session: str = "") -> int:
    """Store one search with the ids it showed; return the log row's id. Side effect: one row."""
    row = SearchQueryLog.objects.create(
        text=result.query[:500],
        normalized=normalize_query(result.query),
        corrected=result.corrected[:500],
        filters=filters.as_dict(),
        sort=result.sort,
        page=result.page,
        result_count=result.total,
        results=[hit.product_id for hit in result.hits],
        model_version=version_name[:100],
        ranker=result.ranker,
        ranker_name=result.ranker_name,
        arm=result.arm or "",
        latency_ms=result.timings_ms.get("total", 0.0),
        session=session[:128],
    )
    return row.pk


class UnknownSearchError(errors.NotFound):
    """A click names a search log id that does not exist (404 on ``search_id``)."""

    default_field = "search_id"


def record_click(*, log_id: int, product_id: int, position: int) -> SearchClick:
    """Record that the shopper opened ``product_id`` from search ``log_id`` (idempotent per pair)."""
    if not SearchQueryLog.objects.filter(pk=log_id).exists():
        raise UnknownSearchError("Unknown search.")
    click, _ = SearchClick.objects.get_or_create(
        query_id=log_id, product_id=product_id, defaults={"position": position}
    )
    return click


def search_analytics(*, limit: int = 20) -> dict[str, list[dict[str, Any]]]:
    """Return top queries, zero-result queries and click-through per query (searches with a click)."""
    top = (
        SearchQueryLog.objects.values("normalized")
        .annotate(searches=Count("id"), clicked=Count("id", filter=Q(clicks__isnull=False), distinct=True))
        .order_by("-searches", "normalized")[:limit]
    )
    zero = (
        SearchQueryLog.objects.filter(result_count=0)
        .values("normalized")
        .annotate(searches=Count("id"))
        .order_by("-searches", "normalized")[:limit]
    )
    rows = []
    for row in top:
        row["ctr"] = round(row["clicked"] / row["searches"], 3) if row["searches"] else 0.0
        rows.append(row)
    return {"top_queries": rows, "zero_result_queries": list(zero)}


# --- suggestions --------------------------------------------------------------------------------


def suggest(*, query: str, limit: int = 8) -> list[dict[str, Any]]:
    """Return autocomplete suggestions: popular past queries, then product titles; typo-tolerant.

    A suggestion matches when it starts with the (corrected) text or contains a close trigram
    match of its first SIMILAR_CHARS characters (``word_similarity`` >= 0.5), found among the
    nearest rows by a GiST index scan (:func:`nearest_texts`): the cost of a request does not grow
    with how many titles or past queries a short input matches. Titles: :func:`title_suggestions`.
    """
    text = normalize_query(query)
    if not text:
        return []
    corrector, _ = catalogue_vocabulary()
    corrected = corrector.correct(text) or text
    prefix = corrected.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    similar = [text[:SIMILAR_CHARS], corrected[:SIMILAR_CHARS]]  # a trigram distance costs its text's length
    with connection.cursor() as cursor:
        nearest = nearest_texts(cursor, table="search_searchquerylog", column="normalized", texts=similar)
        cursor.execute(
            """SELECT normalized, count(*) AS n FROM search_searchquerylog
               WHERE result_count > 0 AND (normalized LIKE %s OR normalized = ANY(%s))
               GROUP BY normalized ORDER BY n DESC, normalized LIMIT %s""",
            [prefix, list(nearest), limit],
        )
        queries = [{"text": value, "kind": "query", "sku": None, "searches": n} for value, n in cursor.fetchall()]
        products = [
            {"text": title, "kind": "product", "sku": sku, "searches": 0}
            for sku, title in title_suggestions(cursor, prefix=prefix, texts=similar, limit=limit)
        ]
    return (queries + products)[:limit]


def title_suggestions(cursor, *, prefix: str, texts: list[str], limit: int) -> list[tuple[str, str]]:
    """(sku, title) of up to ``limit`` products: titles that start with ``prefix`` (a LIKE pattern), then
    the titles nearest to any of ``texts`` by word similarity, if at least TRIGRAM_THRESHOLD.

    Each text's nearest titles come from a GiST index scan ordered by ``<<->`` (migration 0007), which
    reads about ``limit`` rows however many titles a short input matches."""
    cursor.execute(
        f"SELECT p.sku, p.title FROM catalog_product p WHERE {PRODUCT_TRIGRAM_TEXT} LIKE %s ORDER BY p.id LIMIT %s",
        [prefix, limit],
    )
    found = dict(cursor.fetchall())
    titles = nearest_texts(
        cursor, table="catalog_product p", column=PRODUCT_TRIGRAM_TEXT, texts=texts, limit=limit, extra="p.sku, p.title"
    )
    for _, sku, title in titles.values():
        found.setdefault(sku, title)
    return list(found.items())[:limit]


def nearest_texts(
    cursor, *, table: str, column: str, texts: list[str], limit: int = 50, extra: str = ""
) -> dict[str, tuple]:
    """{value of ``column``: (similarity, *extra columns)} of the ``limit`` rows of ``table`` nearest to each
    of ``texts`` by word similarity (a GiST index scan ordered by ``<<->``), kept if at least
    TRIGRAM_THRESHOLD; most similar first."""
    nearest: dict[str, tuple] = {}
    for text in dict.fromkeys(texts):
        cursor.execute(
            f"SELECT {column}, word_similarity(%s, {column}){', ' + extra if extra else ''} FROM {table} "
            f"ORDER BY %s <<-> {column} LIMIT %s",
            [text, text, limit],
        )
        for value, similarity, *rest in cursor.fetchall():
            if similarity >= TRIGRAM_THRESHOLD and similarity > nearest.get(value, (-1.0,))[0]:
                nearest[value] = (similarity, *rest)
    return dict(sorted(nearest.items(), key=lambda item: (-item[1][0], item[0])))
