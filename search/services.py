"""Search operations: hybrid product search, suggestions, search/click logging, ranker training.

Retrieval is PostgreSQL only, on the live catalogue: full text over the expression index of
migration 0003 (so a saved product is found lexically at once), pg_trgm ``word_similarity`` on
the lower-cased title for typos, and pgvector HNSW over the active version's product
embeddings (filled by the worker on commit). The candidates of the three legs are reranked by
the learned ranker of the active version (:class:`search.ml.Ranker`) when one has been
trained, else fused by reciprocal rank.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q

from search import ml
from search.models import JudgedQuery, RelevanceLabel, SearchClick, SearchQueryLog

logger = logging.getLogger(__name__)

# The stored generated column of migration 0003 (weighted title > brand, category > description).
PRODUCT_TSVECTOR = "p.search_tsv"
# Must match the trigram index of migration 0003 exactly, or PostgreSQL will not use it.
PRODUCT_TRIGRAM_TEXT = "lower(p.title)"

LEXICAL_K = 100
TRIGRAM_K = 50
DENSE_K = 100
MAX_RESULTS = 250
SORTS = ("relevance", "price_asc", "price_desc", "newest")
MODES = ("hybrid", "lexical")
PRICE_BUCKETS = (0, 10, 25, 50, 100, 250, 500, 1000)
VOCABULARY_TTL_SECONDS = 600.0
TRIGRAM_THRESHOLD = 0.5
RANKER_DIRNAME = "search"
WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class SearchFilters:
    """Optional filters; ``category`` is a category-path prefix."""

    category: str = ""
    brand: str = ""
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        values = {
            "category": self.category,
            "brand": self.brand,
            "min_price": str(self.min_price) if self.min_price is not None else None,
            "max_price": str(self.max_price) if self.max_price is not None else None,
            "in_stock": self.in_stock,
        }
        return {k: v for k, v in values.items() if v not in ("", None)}

    def sql(self) -> tuple[str, list[Any]]:
        """Return a SQL condition on ``p`` (catalog_product) and its parameters."""
        clauses, params = ["TRUE"], []
        if self.category:
            clauses.append("p.category_path LIKE %s")
            params.append(self.category.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if self.brand:
            clauses.append("p.brand = %s")
            params.append(self.brand)
        if self.min_price is not None:
            clauses.append("p.price >= %s")
            params.append(self.min_price)
        if self.max_price is not None:
            clauses.append("p.price <= %s")
            params.append(self.max_price)
        if self.in_stock is not None:
            clauses.append("p.in_stock = %s")
            params.append(self.in_stock)
        return " AND ".join(clauses), params


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
    log_id: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


# --- catalogue vocabulary (query correction, BM25 statistics), cached per process ------------

_VOCABULARY: dict[str, Any] = {"loaded_at": -1e9, "corrector": None, "stats": None}
_VOCABULARY_LOCK = threading.Lock()


def catalogue_vocabulary(*, refresh: bool = False) -> tuple[ml.QueryCorrector, ml.LexiconStats]:
    """Return the query corrector and title-lexeme statistics of the live catalogue.

    Read with ``ts_stat`` at most every ``VOCABULARY_TTL_SECONDS`` per process (a new word
    becomes correctable within that time; lexical matching itself is always live).
    """
    with _VOCABULARY_LOCK:
        if not refresh and time.monotonic() - _VOCABULARY["loaded_at"] < VOCABULARY_TTL_SECONDS:
            return _VOCABULARY["corrector"], _VOCABULARY["stats"]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT word, ndoc FROM ts_stat('SELECT to_tsvector(''simple'', lower(title)) FROM catalog_product')"
            )
            words = dict(cursor.fetchall())
            cursor.execute(
                "SELECT word, ndoc FROM ts_stat('SELECT to_tsvector(''english'', title) FROM catalog_product')"
            )
            lexemes = dict(cursor.fetchall())
            cursor.execute(
                "SELECT count(*), coalesce(avg(length(to_tsvector('english', title))), 1) FROM catalog_product"
            )
            documents, average = cursor.fetchone()
        stats = ml.LexiconStats(lexemes, int(documents), float(average) or 1.0)
        _VOCABULARY.update(loaded_at=time.monotonic(), corrector=ml.QueryCorrector(words), stats=stats)
        return _VOCABULARY["corrector"], stats


# --- the learned ranker of a backbone version ------------------------------------------------

_RANKERS: dict[str, ml.Ranker | None] = {}


def ranker_folder(version_name: str) -> Path:
    """Return where the ranker trained for backbone version ``version_name`` lives."""
    return Path(settings.MODELS_DIR) / RANKER_DIRNAME / version_name


def load_ranker(version_name: str) -> ml.Ranker | None:
    """Return the ranker trained for ``version_name`` (cached per process), or None."""
    if version_name not in _RANKERS:
        folder = ranker_folder(version_name)
        _RANKERS[version_name] = ml.Ranker.load(folder) if (folder / "ranker.txt").exists() else None
    return _RANKERS[version_name]


# --- retrieval --------------------------------------------------------------------------------


def tsquery_text(text: str) -> str:
    """Return ``to_tsquery`` input matching any word of ``text`` ('' when none); no character can break it."""
    return " | ".join(WORD.findall(text))


def vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in vector.tolist()) + "]"


@dataclass
class Retrieved:
    """The three legs' rankings (product ids) and the fused candidates with their features."""

    legs: dict[str, list[int]]
    candidates: list[ml.Candidate]
    features: np.ndarray


def retrieve(
    cursor,
    *,
    query: str,
    corrected: str,
    vector: np.ndarray | None,
    version_id: int | None,
    filters: SearchFilters,
    trigram: bool = True,
) -> Retrieved:
    """Run the lexical, trigram and dense legs under ``filters`` and compute each candidate's features.

    Call inside a transaction (the dense leg sets ``hnsw.*`` locally). The dense leg uses
    pgvector's iterative index scan, so a filtered query still returns min(k, matches) rows.
    """
    where, params = filters.sql()
    legs: dict[str, list[int]] = {"lexical": [], "trigram": [], "dense": []}
    tsq = tsquery_text(corrected)
    if tsq:
        cursor.execute(
            f"""SELECT p.id FROM catalog_product p, to_tsquery('english', %s) q
                WHERE {PRODUCT_TSVECTOR} @@ q AND {where}
                ORDER BY ts_rank({PRODUCT_TSVECTOR}, q, 1) DESC, p.id LIMIT %s""",
            [tsq, *params, LEXICAL_K],
        )
        legs["lexical"] = [row[0] for row in cursor.fetchall()]
    lowered = query.lower().strip()
    if trigram and len(lowered) >= 3:
        cursor.execute("SET LOCAL pg_trgm.word_similarity_threshold = %s", [TRIGRAM_THRESHOLD])
        cursor.execute(
            f"""SELECT p.id FROM catalog_product p WHERE %s <% {PRODUCT_TRIGRAM_TEXT} AND {where}
                ORDER BY word_similarity(%s, {PRODUCT_TRIGRAM_TEXT}) DESC, p.id LIMIT %s""".replace("<%", "<%%"),
            [lowered, *params, lowered, TRIGRAM_K],
        )
        legs["trigram"] = [row[0] for row in cursor.fetchall()]
    if vector is not None and version_id is not None:
        literal = vector_literal(vector)
        cursor.execute("SET LOCAL hnsw.ef_search = %s", [max(DENSE_K, 100)])
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute("SET LOCAL hnsw.max_scan_tuples = 100000")
        # relaxed_order may return rows slightly out of order: re-sort the materialised top k.
        cursor.execute(
            f"""WITH nearest AS MATERIALIZED (
                    SELECT e.product_id, e.embedding <=> %s::vector AS distance
                    FROM catalog_productembedding e JOIN catalog_product p ON p.id = e.product_id
                    WHERE e.version_id = %s AND {where}
                    ORDER BY e.embedding <=> %s::vector LIMIT %s)
                SELECT product_id FROM nearest ORDER BY distance, product_id""",
            [literal, version_id, *params, literal, DENSE_K],
        )
        legs["dense"] = [row[0] for row in cursor.fetchall()]
    order = list(dict.fromkeys(legs["lexical"] + legs["dense"] + legs["trigram"]))
    if not order:
        return Retrieved(legs, [], np.zeros((0, len(ml.FEATURES)), dtype=np.float32))
    cursor.execute(
        f"""SELECT p.id, p.title, tsvector_to_array(to_tsvector('english', p.title)),
                   ts_rank({PRODUCT_TSVECTOR}, to_tsquery('english', %s), 1),
                   similarity(%s, {PRODUCT_TRIGRAM_TEXT}), word_similarity(%s, {PRODUCT_TRIGRAM_TEXT}),
                   1 - (e.embedding <=> %s::vector)
            FROM catalog_product p
            LEFT JOIN catalog_productembedding e ON e.product_id = p.id AND e.version_id = %s
            WHERE p.id = ANY(%s)""",
        [
            tsq,
            lowered,
            lowered,
            vector_literal(vector) if vector is not None else None,
            version_id,
            order,
        ],
    )
    rows = {row[0]: row for row in cursor.fetchall()}
    ranks = {name: {pid: r for r, pid in enumerate(ranking, start=1)} for name, ranking in legs.items()}
    candidates = []
    for pid in order:
        _, title, lexemes, ts_rank, trigram, word_sim, cosine = rows[pid]
        candidates.append(
            ml.Candidate(
                key=pid, title=title, lexemes=lexemes, ts_rank=ts_rank, trigram=trigram, word_similarity=word_sim,
                cosine=cosine, ranks={name: r[pid] for name, r in ranks.items() if pid in r},
            )
        )  # fmt: skip
    return Retrieved(legs, candidates, np.zeros((0, len(ml.FEATURES)), dtype=np.float32))


def query_lexemes(cursor, text: str) -> list[str]:
    """Return ``text``'s English lexemes in the order they occur."""
    cursor.execute(
        "SELECT coalesce(array(SELECT lexeme FROM unnest(to_tsvector('english', %s)) ORDER BY positions[1]), '{}')",
        [text],
    )
    return cursor.fetchone()[0]


def score_candidates(
    cursor, retrieved: Retrieved, corrected: str, ranker: ml.Ranker | None
) -> tuple[dict[int, float], str]:
    """Return product id -> relevance score, and which ranker produced it ('learned' or 'fusion')."""
    if not retrieved.candidates:
        return {}, "fusion" if ranker is None else "learned"
    if ranker is not None:
        _, stats = catalogue_vocabulary()
        retrieved.features = ml.candidate_features(
            corrected, query_lexemes(cursor, corrected), retrieved.candidates, stats
        )
        scores = ranker.predict(retrieved.features)
        return {c.key: float(s) for c, s in zip(retrieved.candidates, scores, strict=True)}, "learned"
    fused: dict[int, float] = {}
    for ranking in retrieved.legs.values():
        for rank, pid in enumerate(ranking, start=1):
            fused[pid] = fused.get(pid, 0.0) + 1.0 / (60 + rank)
    return fused, "fusion"


def matched_by(candidate: ml.Candidate) -> str:
    lexical = "lexical" in candidate.ranks or "trigram" in candidate.ranks
    semantic = "dense" in candidate.ranks
    return "both" if lexical and semantic else ("lexical" if lexical else "semantic")


def compute_facets(cursor, product_ids: list[int]) -> dict[str, Any]:
    """Return category, brand and price-bucket counts over ``product_ids`` (the whole match set)."""
    facets: dict[str, Any] = {"category": [], "brand": [], "price": []}
    if not product_ids:
        return facets
    for name, column in (("category", "category_path"), ("brand", "brand")):
        cursor.execute(
            f"""SELECT {column}, count(*) FROM catalog_product WHERE id = ANY(%s) AND {column} <> ''
                GROUP BY {column} ORDER BY count(*) DESC, {column} LIMIT 20""",
            [product_ids],
        )
        facets[name] = [{"value": value, "count": count} for value, count in cursor.fetchall()]
    bounds = list(PRICE_BUCKETS)
    cursor.execute(
        "SELECT width_bucket(price, %s::numeric[]), count(*) FROM catalog_product "
        "WHERE id = ANY(%s) AND price IS NOT NULL GROUP BY 1 ORDER BY 1",
        [bounds, product_ids],
    )
    for bucket, count in cursor.fetchall():
        low = bounds[bucket - 1]
        high = bounds[bucket] if bucket < len(bounds) else None
        facets["price"].append({"min": low, "max": high, "count": count})
    return facets


def get_active_version():
    from backbone.services import get_active_version as active

    return active()


def encode_query(text: str) -> tuple[Any, np.ndarray | None]:
    """Return (active version, query vector); the vector is None when the text is blank."""
    from backbone.services import active_encoder

    version, encoder = active_encoder()
    if not text.strip():
        return version, None
    return version, encoder.encode([text])[0]


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
    corrector, _ = catalogue_vocabulary()
    corrected = corrector.correct(query)
    timings: dict[str, float] = {}
    hybrid = mode == "hybrid"
    version, vector = encode_query(corrected or query) if hybrid else (get_active_version(), None)
    timings["encode"] = round((time.perf_counter() - started) * 1000, 2)
    ranker = load_ranker(version.name) if hybrid else None
    with transaction.atomic(), connection.cursor() as cursor:
        retrieved = retrieve(
            cursor, query=query, corrected=corrected, vector=vector, version_id=version.pk, filters=filters,
            trigram=hybrid,
        )  # fmt: skip
        if hybrid:
            scores, ranker_name = score_candidates(cursor, retrieved, corrected, ranker)
        else:
            ranking = retrieved.legs["lexical"]
            scores, ranker_name = {pid: float(len(ranking) - i) for i, pid in enumerate(ranking)}, "lexical"
        timings["retrieve_rank"] = round((time.perf_counter() - started) * 1000 - timings["encode"], 2)
        by_id = {c.key: c for c in retrieved.candidates}
        ordered = sorted(scores, key=lambda pid: (-scores[pid], pid))[:MAX_RESULTS]
        facet_counts = compute_facets(cursor, ordered) if facets else {"category": [], "brand": [], "price": []}
    products = {p["id"]: p for p in _product_rows(ordered)}
    ordered = [pid for pid in ordered if pid in products]
    if sort == "price_asc":
        ordered.sort(key=lambda pid: (products[pid]["price"] is None, products[pid]["price"] or 0, pid))
    elif sort == "price_desc":
        ordered.sort(key=lambda pid: (products[pid]["price"] is None, -(products[pid]["price"] or 0), pid))
    elif sort == "newest":
        ordered.sort(key=lambda pid: (-products[pid]["created_at"].timestamp(), pid))
    start = (page - 1) * page_size
    hits = [
        SearchHit(
            product_id=pid,
            sku=products[pid]["sku"],
            title=products[pid]["title"],
            brand=products[pid]["brand"],
            category_path=products[pid]["category_path"],
            price=products[pid]["price"],
            in_stock=products[pid]["in_stock"],
            score=round(scores[pid], 6),
            matched_by=matched_by(by_id[pid]),
        )
        for pid in ordered[start : start + page_size]
    ]
    timings["total"] = round((time.perf_counter() - started) * 1000, 2)
    result = SearchResult(
        query=query, corrected=corrected, total=len(ordered), page=page, page_size=page_size, sort=sort,
        ranker=ranker_name, hits=hits, facets=facet_counts, timings_ms=timings,
    )  # fmt: skip
    if log:
        result.log_id = log_search(result=result, filters=filters, version_name=version.name, session=session)
    return result


def _product_rows(ids: list[int]) -> list[dict[str, Any]]:
    from catalog.models import Product

    return list(
        Product.objects.filter(id__in=ids).values(
            "id", "sku", "title", "brand", "category_path", "price", "in_stock", "created_at"
        )
    )


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
        latency_ms=result.timings_ms.get("total", 0.0),
        session=session[:128],
    )
    return row.pk


class UnknownSearchError(LookupError):
    """A click names a search log id that does not exist."""


def record_click(*, log_id: int, product_id: int, position: int) -> SearchClick:
    """Record that the shopper opened ``product_id`` from search ``log_id`` (idempotent per pair)."""
    if not SearchQueryLog.objects.filter(pk=log_id).exists():
        raise UnknownSearchError(f"no search with id {log_id}")
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
    match of it (``word_similarity`` >= 0.5).
    """
    text = normalize_query(query)
    if not text:
        return []
    corrector, _ = catalogue_vocabulary()
    corrected = corrector.correct(text) or text
    prefix = corrected.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL pg_trgm.word_similarity_threshold = %s", [TRIGRAM_THRESHOLD])
        cursor.execute(
            """SELECT normalized, count(*) AS n FROM search_searchquerylog
               WHERE result_count > 0 AND (normalized LIKE %s OR %s <%% normalized OR %s <%% normalized)
               GROUP BY normalized ORDER BY n DESC, normalized LIMIT %s""",
            [prefix, text, corrected, limit],
        )
        queries = [{"text": value, "kind": "query", "sku": None, "searches": n} for value, n in cursor.fetchall()]
        cursor.execute(
            f"""SELECT p.sku, p.title FROM catalog_product p
                WHERE {PRODUCT_TRIGRAM_TEXT} LIKE %s OR %s <% {PRODUCT_TRIGRAM_TEXT} OR %s <% {PRODUCT_TRIGRAM_TEXT}
                ORDER BY {PRODUCT_TRIGRAM_TEXT} LIKE %s DESC,
                         greatest(word_similarity(%s, {PRODUCT_TRIGRAM_TEXT}), word_similarity(%s, {PRODUCT_TRIGRAM_TEXT})) DESC,
                         p.id
                LIMIT %s""".replace("<%", "<%%"),
            [prefix, text, corrected, prefix, text, corrected, limit],
        )
        products = [{"text": title, "kind": "product", "sku": sku, "searches": 0} for sku, title in cursor.fetchall()]
    return (queries + products)[:limit]


# --- training the ranker on the live catalogue ---------------------------------------------------


def judged_training_queries(*, limit: int | None = None) -> list[tuple[str, dict[int, float]]]:
    """Return (query text, product id -> graded relevance) from labels and clicks.

    Clicks count as relevance 3 for the clicked product of that query text, unless a label says otherwise.
    """
    queries: dict[str, dict[int, float]] = {}
    for query in JudgedQuery.objects.order_by("id")[: limit or None]:
        queries[query.text] = {}
    for text, product_id, relevance in RelevanceLabel.objects.filter(query__text__in=list(queries)).values_list(
        "query__text", "product_id", "relevance"
    ):
        queries[text][product_id] = relevance
    for text, product_id in SearchClick.objects.values_list("query__text", "product_id")[:50_000]:
        queries.setdefault(text, {}).setdefault(product_id, 3.0)
    return [(text, labels) for text, labels in queries.items() if labels]


def train_ranker(*, max_queries: int = 3000, seed: int = 7) -> Path:
    """Fit the learned ranker for the active version on judged queries and clicks; return its folder.

    Candidates and features come from the live pipeline, so they match serving. Side effects:
    writes ``MODELS_DIR/search/<version>/`` (ranker.txt + config.json), replacing an older one.
    """
    import random

    from backbone.services import active_encoder

    version, encoder = active_encoder()
    examples = judged_training_queries(limit=None)
    random.Random(seed).shuffle(examples)
    examples = examples[:max_queries]
    if len(examples) < 10:
        raise ValueError("at least 10 judged or clicked queries are needed to train the ranker")
    corrector, stats = catalogue_vocabulary(refresh=True)
    features, relevances = [], []
    corrected_texts = [corrector.correct(text) or text for text, _ in examples]
    vectors = encoder.encode(corrected_texts)
    with transaction.atomic(), connection.cursor() as cursor:
        for (text, labels), corrected, vector in zip(examples, corrected_texts, vectors, strict=True):
            retrieved = retrieve(
                cursor, query=text, corrected=corrected, vector=vector, version_id=version.pk, filters=SearchFilters()
            )
            if len(retrieved.candidates) < 2:
                continue
            features.append(
                ml.candidate_features(corrected, query_lexemes(cursor, corrected), retrieved.candidates, stats)
            )
            relevances.append(np.array([labels.get(c.key, 0.0) for c in retrieved.candidates]))
    n_valid = max(1, len(features) // 10)
    ranker = ml.Ranker.fit(
        features[n_valid:], relevances[n_valid:], features[:n_valid], relevances[:n_valid], seed=seed
    )
    ranker.config["version"] = version.name
    ranker.config["queries"] = len(features)
    folder = ranker_folder(version.name)
    ranker.save(folder)
    _RANKERS.pop(version.name, None)
    return folder


# --- the backbone's training task ------------------------------------------------------------------


def build_training_task(parameters: dict[str, Any]) -> ml.SearchContrastiveTask:
    """Build the ``search`` task of a multi-task fine-tune from graded labels and search clicks.

    Positives: products judged >= 2.33 for a query, and clicked search results; hard negatives:
    products judged <= 1.67 for the same query. 5% of judged queries (seeded) are held out for
    validation. Parameters: ``search_max_pairs``, ``search_max_batches``, ``search_weight``, ``seed``.
    """
    import random

    from catalog.models import Product

    rng = random.Random(parameters.get("seed", 13))
    judged: dict[str, dict[int, float]] = {}
    for text, product_id, relevance in RelevanceLabel.objects.values_list("query__text", "product_id", "relevance"):
        judged.setdefault(text, {})[product_id] = relevance
    clicks: dict[str, set[int]] = {}
    for text, product_id in SearchClick.objects.values_list("query__text", "product_id")[:100_000]:
        clicks.setdefault(text, set()).add(product_id)
    texts = dict(
        Product.objects.filter(
            id__in={pid for labels in judged.values() for pid in labels}
            | {pid for ids in clicks.values() for pid in ids}
        ).values_list("id", "title")
    )
    queries = sorted(judged)
    rng.shuffle(queries)
    n_valid = min(200, max(1, len(queries) // 20)) if len(queries) > 20 else 0
    validation = [(q, {texts[p]: r for p, r in judged[q].items()}) for q in queries[:n_valid] if len(judged[q]) > 1]
    held_out = set(queries[:n_valid])
    pairs = ml.relevance_pairs([(q, {texts[p]: r for p, r in judged[q].items()}) for q in queries[n_valid:]], rng)
    for query, product_ids in clicks.items():
        if query not in held_out:
            pairs.extend(ml.RelevancePair(query, texts[p]) for p in product_ids if p in texts)
    rng.shuffle(pairs)
    if parameters.get("search_max_pairs"):
        pairs = pairs[: int(parameters["search_max_pairs"])]
    if len(pairs) < 2:
        raise ValueError("the search task needs at least 2 relevant query-product pairs (labels or clicks)")
    return ml.SearchContrastiveTask(
        pairs,
        validation,
        weight=float(parameters.get("search_weight", 1.0)),
        max_batches=parameters.get("search_max_batches"),
    )
