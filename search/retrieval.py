"""Retrieval for search, in PostgreSQL only, on the live catalogue: what serving and training share.

- full text over the weighted ``search_tsv`` column of migration 0003 (title A > brand, category
  B > description C), so a saved product is found lexically at once; the query is tokenised by
  the same parser (its lexemes, quoted, OR-ed);
- pgvector HNSW over a backbone version's product embeddings;
- pg_trgm ``word_similarity`` of the raw query against the lower-cased title, for typos: ranked
  among the candidates of the other two (:func:`similar_candidates`).

:func:`retrieve` runs the legs and turns every candidate into a feature row
(:func:`search.ml.candidate_features`): :mod:`search.services` ranks those rows for the API and
:mod:`search.training` fits the ranker on them, so a ranker learns from what it is served.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import connection

from search import ml

# The stored generated column of migration 0003 (weighted title A > brand, category B > description C).
PRODUCT_TSVECTOR = "p.search_tsv"
# The title's lexemes, as that column has them (weight A): what BM25 scores.
PRODUCT_TITLE_LEXEMES = "tsvector_to_array(ts_filter(p.search_tsv, '{a}'))"
# Must match the trigram index of migration 0003 exactly, or PostgreSQL will not use it.
PRODUCT_TRIGRAM_TEXT = "lower(p.title)"

LEXICAL_K = 100
TRIGRAM_K = 50
DENSE_K = 100
VOCABULARY_TTL_SECONDS = 600.0
TRIGRAM_THRESHOLD = 0.5


@dataclass(frozen=True)
class SearchFilters:
    """Optional filters; ``category`` is a category-path prefix."""

    category: str = ""
    brand: str = ""
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the filters that are set, JSON-serialisable (for the search log)."""
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


# --- catalogue vocabulary (query correction, BM25 statistics), cached per process ------------

_VOCABULARY: dict[str, Any] = {"loaded_at": -1e9, "corrector": None, "stats": None}
_VOCABULARY_LOCK = threading.Lock()


def reset_vocabulary() -> None:
    """Forget the per-process catalogue vocabulary: the next search reloads it (tests; after a bulk import)."""
    with _VOCABULARY_LOCK:
        _VOCABULARY.update(loaded_at=-1e9, corrector=None, stats=None)


def catalogue_vocabulary(*, refresh: bool = False) -> tuple[ml.QueryCorrector, ml.LexiconStats]:
    """Return the query corrector (title words) and the title-lexeme statistics of the live catalogue.

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
            cursor.execute("SELECT word, ndoc FROM ts_stat('SELECT search_tsv FROM catalog_product', 'a')")
            lexemes = dict(cursor.fetchall())
            cursor.execute(
                "SELECT count(*), coalesce(avg(length(ts_filter(search_tsv, '{a}'))), 1) FROM catalog_product"
            )
            documents, average = cursor.fetchone()
        stats = ml.LexiconStats(lexemes, int(documents), float(average) or 1.0)
        _VOCABULARY.update(loaded_at=time.monotonic(), corrector=ml.QueryCorrector(words), stats=stats)
        return _VOCABULARY["corrector"], stats


def correct_query(query: str) -> tuple[str, str]:
    """Return (the query corrected against the catalogue's words, the text to encode for the dense leg)."""
    corrector, _ = catalogue_vocabulary()
    corrected = corrector.correct(query)
    return corrected, corrected or query


# --- the three legs ---------------------------------------------------------------------------


# What the dense leg sets for its transaction: HNSW's candidate list and its iterative scan, which
# keeps a filtered query returning min(k, matches) rows.
LEG_SETTINGS = {
    "hnsw.ef_search": str(max(DENSE_K, 100)),
    "hnsw.iterative_scan": "relaxed_order",
    "hnsw.max_scan_tuples": "100000",
}


def query_lexemes(cursor, text: str) -> list[str]:
    """Return ``text``'s English lexemes in the order they occur (as the tsvector column stems them).

    The same round trip sets :data:`LEG_SETTINGS` for the rest of the transaction (``SET LOCAL``).
    """
    settings = ", ".join("set_config(%s, %s, true)" for _ in LEG_SETTINGS)
    cursor.execute(
        f"SELECT coalesce(array(SELECT lexeme FROM unnest(to_tsvector('english', %s)) ORDER BY positions[1]), '{{}}'), "
        f"{settings}",
        [text, *(item for pair in LEG_SETTINGS.items() for item in pair)],
    )
    return cursor.fetchone()[0]


def lexeme_tsquery(lexemes: list[str]) -> str:
    """Return a ``tsquery`` literal matching any of ``lexemes`` exactly ('' when none).

    The lexemes come from ``to_tsvector`` of the query, so the query is tokenised as the
    products were (``1/2`` stays one lexeme); quoting keeps any character from breaking it.
    """
    return " | ".join("'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" for lexeme in dict.fromkeys(lexemes))


def vector_literal(vector: np.ndarray) -> str:
    """Return pgvector's text form of a 1-d vector: ``[x1,x2,...]``."""
    return "[" + ",".join(f"{x:.6f}" for x in vector.tolist()) + "]"


@dataclass
class Retrieved:
    """The legs' rankings (product ids), the fused candidates, their feature rows and what a hit shows of each."""

    legs: dict[str, list[int]]
    candidates: list[ml.Candidate]
    features: np.ndarray
    products: dict[int, dict[str, Any]]  # id -> PRODUCT_FIELDS (a hit's fields and the facets' values)


def lexical_leg(cursor, tsquery: str, where: str, params: list[Any]) -> list[int]:
    """Return the ids of up to ``LEXICAL_K`` products matching any query lexeme, best ``ts_rank`` first."""
    if not tsquery:
        return []
    cursor.execute(
        f"""SELECT p.id FROM catalog_product p, CAST(%s AS tsquery) q
            WHERE {PRODUCT_TSVECTOR} @@ q AND {where}
            ORDER BY ts_rank({PRODUCT_TSVECTOR}, q, 1) DESC, p.id LIMIT %s""",
        [tsquery, *params, LEXICAL_K],
    )
    return [row[0] for row in cursor.fetchall()]


def dense_leg(cursor, literal: str, version_id: int, where: str, params: list[Any]) -> list[int]:
    """Return the ids of the ``DENSE_K`` products nearest to the query vector under ``where``.

    First by the HNSW index (with the iterative scan of :data:`LEG_SETTINGS`, set by
    :func:`query_lexemes`); when that returns fewer than ``DENSE_K``, exactly. An HNSW scan can
    miss rows: with many equal vectors in the index (other versions' embeddings of the same
    texts, live or not yet vacuumed) it returned 0-1 of 8 products, whatever ``ef_search``; and
    fewer than ``DENSE_K`` matches means the filter is selective, so the exact scan is short.
    """
    ids = nearest_products(cursor, literal, version_id, where, params, exact=False)
    return ids if len(ids) >= DENSE_K else nearest_products(cursor, literal, version_id, where, params, exact=True)


def nearest_products(cursor, literal: str, version_id: int, where: str, params: list[Any], *, exact: bool) -> list[int]:
    """The ``DENSE_K`` nearest products under ``where``; ``exact`` orders by an expression the HNSW index cannot serve."""
    order = "(e.embedding <=> %s::vector) + 0" if exact else "e.embedding <=> %s::vector"
    # relaxed_order may return rows slightly out of order: re-sort the materialised top k.
    cursor.execute(
        f"""WITH nearest AS MATERIALIZED (
                SELECT e.product_id, e.embedding <=> %s::vector AS distance
                FROM catalog_productembedding e JOIN catalog_product p ON p.id = e.product_id
                WHERE e.version_id = %s AND {where}
                ORDER BY {order} LIMIT %s)
            SELECT product_id FROM nearest ORDER BY distance, product_id""",
        [literal, version_id, *params, literal, DENSE_K],
    )
    return [row[0] for row in cursor.fetchall()]


PRODUCT_FIELDS = ("sku", "brand", "category_path", "price", "in_stock", "created_at")


def candidate_rows(
    cursor, legs: dict[str, list[int]], tsquery: str, lowered: str, literal: str | None, version_id: int | None
) -> tuple[list[ml.Candidate], dict[int, dict[str, Any]]]:
    """Return one :class:`ml.Candidate` per product of any leg (lexical, dense, trigram order), with
    its scores, and each one's :data:`PRODUCT_FIELDS` (with ``id`` and ``title``), in one statement."""
    order = list(dict.fromkeys(legs["lexical"] + legs["dense"] + legs["trigram"]))
    if not order:
        return [], {}
    cursor.execute(
        f"""SELECT p.id, p.title, {PRODUCT_TITLE_LEXEMES},
                   coalesce(ts_rank({PRODUCT_TSVECTOR}, CAST(nullif(%s, '') AS tsquery), 1), 0),
                   similarity(%s, {PRODUCT_TRIGRAM_TEXT}), word_similarity(%s, {PRODUCT_TRIGRAM_TEXT}),
                   1 - (e.embedding <=> %s::vector), {", ".join(f"p.{name}" for name in PRODUCT_FIELDS)}
            FROM catalog_product p
            LEFT JOIN catalog_productembedding e ON e.product_id = p.id AND e.version_id = %s
            WHERE p.id = ANY(%s)""",
        [tsquery, lowered, lowered, literal, version_id, order],
    )
    rows = {row[0]: row for row in cursor.fetchall()}
    ranks = {name: {pid: r for r, pid in enumerate(ranking, start=1)} for name, ranking in legs.items()}
    candidates, products = [], {}
    for pid in order:
        _, title, lexemes, ts_rank, trigram, word_sim, cosine, *fields = rows[pid]
        candidates.append(
            ml.Candidate(
                key=pid, title=title, lexemes=lexemes, ts_rank=ts_rank, trigram=trigram, word_similarity=word_sim,
                cosine=cosine, ranks={name: r[pid] for name, r in ranks.items() if pid in r},
            )
        )  # fmt: skip
        products[pid] = {"id": pid, "title": title, **dict(zip(PRODUCT_FIELDS, fields, strict=True))}
    return candidates, products


def similar_candidates(candidates: list[ml.Candidate]) -> list[int]:
    """The trigram leg, ranked among the other legs' ``candidates``: those whose title holds a close
    trigram match of the raw query (``word_similarity`` at least TRIGRAM_THRESHOLD), most similar
    first, at most TRIGRAM_K; each one's ``ranks`` gets its place.

    It used to be a pg_trgm index scan of the whole catalogue (``<%``), which rechecked thousands of
    titles per query and took four fifths of a search; the query corrector already brings a typo'd
    query's products to the full-text and dense legs. Through the API on the Home Depot split, with
    the same trained ranker: NDCG@10 0.4383 -> 0.4385, with one typo 0.4088 -> 0.4088, search p50
    83.6 -> 44.2 ms (bench/reports/search-latency.md).
    """
    similar = sorted(
        (c for c in candidates if c.word_similarity >= TRIGRAM_THRESHOLD), key=lambda c: (-c.word_similarity, c.key)
    )
    for rank, candidate in enumerate(similar[:TRIGRAM_K], start=1):
        candidate.ranks["trigram"] = rank
    return [c.key for c in similar[:TRIGRAM_K]]


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
    """Run the lexical, trigram and dense legs under ``filters``; return the candidates with their features.

    Serving and ranker training both call this, so a ranker learns from what it is served. Call
    inside a transaction (the legs set ``pg_trgm.*`` and ``hnsw.*`` locally).
    """
    where, params = filters.sql()
    _, stats = catalogue_vocabulary()
    lexemes = query_lexemes(cursor, corrected)
    tsquery = lexeme_tsquery(lexemes)
    lowered = query.lower().strip()
    literal = vector_literal(vector) if vector is not None and version_id is not None else None
    legs = {
        "lexical": lexical_leg(cursor, tsquery, where, params),
        "trigram": [],
        "dense": dense_leg(cursor, literal, version_id, where, params) if literal else [],
    }
    candidates, products = candidate_rows(cursor, legs, tsquery, lowered, literal, version_id)
    if trigram:
        legs["trigram"] = similar_candidates(candidates)
    return Retrieved(legs, candidates, ml.candidate_features(corrected, lexemes, candidates, stats), products)
