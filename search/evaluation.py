"""Search evaluation behind ``manage.py evaluate search --dataset homedepot``.

Indexes the train folder's catalogue into TEMPORARY tables of the current PostgreSQL session
(full text: tsvector + GIN; semantic: pgvector HNSW, cosine), so the operator's catalogue and
embeddings are never read or written, and measures the test folder's judged queries:

- ``postgres_fts``: PostgreSQL full text alone: the query's words OR-ed into one ``tsquery``
  ('english' config), ranked with ``ts_rank(tsv, q, 1)`` (matched-term frequency, divided by
  1 + log(title length)). On 1,000 train-side queries this beat AND semantics
  (``websearch_to_tsquery``: ndcg@10 0.22, most long queries match nothing) and ``ts_rank_cd``
  (0.23 plain, 0.27 length-normalised) with 0.36;
- ``dense_untuned``: the un-tuned base encoder over pgvector, top 100 by cosine distance;
- the project's model (``metrics``): reciprocal-rank fusion (k=60) of the two.

Metrics, averaged over test queries with at least one label: ``ndcg@10`` with gain = graded
relevance (unjudged products gain 0); ``recall@100`` and ``mrr`` (first relevant hit in the top
100) where "relevant" means relevance >= 2.0 (on Home Depot's 1-3 scale, 2 is "somewhat
relevant"); queries with no relevant product are skipped for recall and MRR.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from tqdm import tqdm

from backbone.encoder import Encoder
from backbone.services import base_model_path
from catalog.importers import DatasetError, ImportOptions, read_csv
from search.metrics import ndcg_at_k, recall_at_k, reciprocal_rank, relevant_items

logger = logging.getLogger(__name__)

DATASETS = ("homedepot",)
RELEVANT_THRESHOLD = 2.0
NDCG_K = 10
TOP_K = 100
RRF_K = 60
EMBED_BATCH_SIZE = 64
TABLE = "search_eval_products"  # a TEMPORARY table: private to this session, gone after the evaluation
WORD = re.compile(r"\w+")


class EvaluationInputError(ValueError):
    """A dataset folder lacks a file or a column the evaluation needs."""


@dataclass
class JudgedQueries:
    """Test queries (id -> text) and their graded judgements (id -> {product uid: relevance})."""

    texts: dict[str, str]
    judgements: dict[str, dict[str, float]]


# --- reading the folders --------------------------------------------------------------------


def read_table(path: Path, required: list[str]) -> list[dict[str, str]]:
    """Return the rows of a UTF-8 CSV that must have ``required`` columns."""
    try:
        return [row for _, row in read_csv(path, required, ImportOptions(progress=False))]
    except DatasetError as exc:
        raise EvaluationInputError(str(exc)) from None


def load_catalogue(train_dir: Path) -> dict[str, str]:
    """Return product uid -> title from the train folder's ``products.csv``, in file order."""
    rows = read_table(train_dir / "products.csv", ["product_uid", "product_title"])
    return {row["product_uid"]: row["product_title"] for row in rows}


def load_judged_queries(test_dir: Path) -> JudgedQueries:
    """Return the test folder's queries that have at least one label, with their judgements."""
    texts = {row["query_id"]: row["query"] for row in read_table(test_dir / "queries.csv", ["query_id", "query"])}
    judgements: dict[str, dict[str, float]] = {}
    for row in read_table(test_dir / "labels.csv", ["query_id", "product_uid", "relevance"]):
        if row["query_id"] in texts:
            try:
                relevance = float(row["relevance"])
            except ValueError:
                raise EvaluationInputError(f"{test_dir / 'labels.csv'}: bad relevance {row['relevance']!r}") from None
            judgements.setdefault(row["query_id"], {})[row["product_uid"]] = relevance
    return JudgedQueries(texts={qid: texts[qid] for qid in texts if qid in judgements}, judgements=judgements)


def sample_queries(judged: JudgedQueries, limit: int | None, seed: int) -> list[str]:
    """Return the ids of the queries to evaluate: all, or a seeded sample of ``limit``, sorted."""
    ids = sorted(judged.texts)
    if limit is not None and limit < len(ids):
        ids = sorted(random.Random(seed).sample(ids, limit))
    return ids


def select_products(
    catalogue: dict[str, str], judged: JudgedQueries, query_ids: list[str], limit: int | None
) -> dict[str, str]:
    """Return the products to index: all, or the first ``limit`` plus every product judged for ``query_ids``.

    Keeping the judged products makes a small index still meaningful (the answers are in it).
    """
    if limit is None:
        return catalogue
    chosen = dict(list(catalogue.items())[:limit])
    for query_id in query_ids:
        for uid in judged.judgements[query_id]:
            if uid in catalogue:
                chosen[uid] = catalogue[uid]
    return chosen


# --- the temporary index --------------------------------------------------------------------


def vector_literal(vector: np.ndarray) -> str:
    """Return pgvector's text form of a 1-d float vector: ``[x1,x2,...]``."""
    return "[" + ",".join(map(repr, vector.tolist())) + "]"


def embed(encoder: Encoder, texts: Sequence[str], desc: str) -> np.ndarray:
    """Embed ``texts`` in batches of 64 with a progress bar on stderr."""
    with tqdm(total=len(texts), desc=desc, unit=" texts", file=sys.stderr, mininterval=2.0) as bar:
        return encoder.encode(texts, batch_size=EMBED_BATCH_SIZE, progress=bar.update)


def create_index(cursor, products: dict[str, str], vectors: np.ndarray) -> None:
    """Create and fill the temporary product table with its GIN (full text) and HNSW (cosine) indexes.

    Call inside a transaction, and drop the table before it ends: on an error the rollback removes it.
    """
    cursor.execute(
        f"""CREATE TEMPORARY TABLE {TABLE} (
            uid text PRIMARY KEY,
            title text NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', title)) STORED,
            embedding vector({vectors.shape[1]}) NOT NULL
        )"""
    )
    with cursor.copy(f"COPY {TABLE} (uid, title, embedding) FROM STDIN") as copy:
        for (uid, title), vector in zip(products.items(), vectors, strict=True):
            copy.write_row((uid, title, vector_literal(vector)))
    # The HNSW build keeps its graph in maintenance_work_mem; 54k x 384 floats need more than the default.
    cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
    cursor.execute(f"CREATE INDEX ON {TABLE} USING gin (tsv)")
    cursor.execute(
        f"CREATE INDEX ON {TABLE} USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
    )
    cursor.execute(f"ANALYZE {TABLE}")
    # ef_search bounds how many rows an HNSW scan returns; it must reach LIMIT 100.
    cursor.execute("SET LOCAL hnsw.ef_search = %s", [max(TOP_K, 100)])


# --- the systems ----------------------------------------------------------------------------


def or_tsquery_text(query: str) -> str:
    """Return ``to_tsquery`` input that matches any word of ``query`` ('' when it has none).

    Only ``\\w+`` runs are kept, so no character of the query can break the tsquery syntax.
    """
    return " | ".join(WORD.findall(query))


def search_fts(cursor, query: str, limit: int = TOP_K) -> list[str]:
    """Return up to ``limit`` product uids ranked by PostgreSQL full text (OR of the query's words)."""
    text = or_tsquery_text(query)
    if not text:
        return []
    cursor.execute(
        f"""SELECT uid FROM {TABLE}, to_tsquery('english', %s) AS q
            WHERE tsv @@ q ORDER BY ts_rank(tsv, q, 1) DESC, uid LIMIT %s""",
        [text, limit],
    )
    return [uid for (uid,) in cursor.fetchall()]


def search_dense(cursor, vector: np.ndarray, limit: int = TOP_K) -> list[str]:
    """Return the ``limit`` product uids nearest to ``vector`` by cosine distance (HNSW)."""
    cursor.execute(
        f"SELECT uid FROM {TABLE} ORDER BY embedding <=> %s::vector LIMIT %s", [vector_literal(vector), limit]
    )
    return [uid for (uid,) in cursor.fetchall()]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K, limit: int = TOP_K) -> list[str]:
    """Fuse rankings by summing 1 / (k + rank) per item (Cormack et al. 2009); ties by id."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: (-scores[item], item))[:limit]


# --- scoring --------------------------------------------------------------------------------


def score_rankings(rankings: dict[str, list[str]], judgements: dict[str, dict[str, float]]) -> dict[str, float]:
    """Return mean ndcg@10 over all queries, recall@100 and MRR over queries with a relevant product."""
    ndcg, recall, rr = [], [], []
    for query_id, ranking in rankings.items():
        judged = judgements[query_id]
        ndcg.append(ndcg_at_k(ranking, judged, NDCG_K))
        relevant = relevant_items(judged, RELEVANT_THRESHOLD)
        if relevant:
            recall.append(recall_at_k(ranking, relevant, TOP_K))
            rr.append(reciprocal_rank(ranking, relevant, TOP_K))
    return {
        f"ndcg@{NDCG_K}": round(float(np.mean(ndcg)) if ndcg else 0.0, 4),
        f"recall@{TOP_K}": round(float(np.mean(recall)) if recall else 0.0, 4),
        "mrr": round(float(np.mean(rr)) if rr else 0.0, 4),
    }


def run_systems(cursor, queries: dict[str, str], query_vectors: np.ndarray) -> dict[str, dict[str, list[str]]]:
    """Return system name -> query id -> ranked uids for full text, dense and their fusion."""
    runs: dict[str, dict[str, list[str]]] = {"postgres_fts": {}, "dense_untuned": {}, "rrf": {}}
    items = zip(queries.items(), query_vectors, strict=True)
    for (query_id, text), vector in tqdm(items, total=len(queries), desc="search", file=sys.stderr, mininterval=2.0):
        lexical = search_fts(cursor, text)
        dense = search_dense(cursor, vector)
        runs["postgres_fts"][query_id] = lexical
        runs["dense_untuned"][query_id] = dense
        runs["rrf"][query_id] = reciprocal_rank_fusion([lexical, dense])
    return runs


def load_base_encoder() -> tuple[Path, Encoder]:
    """Return (path, encoder) of the un-tuned base encoder (not the active version)."""
    path = base_model_path()
    return path, Encoder.load(path, device=settings.BACKBONE_DEVICE, max_length=settings.BACKBONE_MAX_LENGTH)


def evaluate_search(*, dataset: str, train_dir: Path, test_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Index the train catalogue in temporary tables, run the test queries, return metrics.

    Options: ``limit_products``, ``limit_queries``, ``seed``. Side effects: none that outlive the
    call (temporary tables only, dropped before returning); reads no catalogue or model rows.
    """
    if dataset not in DATASETS:
        raise EvaluationInputError(f"search evaluation supports {DATASETS}, not {dataset!r}")
    started = time.monotonic()
    catalogue = load_catalogue(Path(train_dir))
    judged = load_judged_queries(Path(test_dir))
    query_ids = sample_queries(judged, options.get("limit_queries"), options.get("seed", 7))
    if not query_ids:
        raise EvaluationInputError(f"{test_dir}: no test query has a label")
    products = select_products(catalogue, judged, query_ids, options.get("limit_products"))
    queries = {query_id: judged.texts[query_id] for query_id in query_ids}
    logger.info("search evaluation: %d products, %d queries", len(products), len(queries))

    model_path, encoder = load_base_encoder()
    product_vectors = embed(encoder, list(products.values()), "embed products")
    query_vectors = embed(encoder, list(queries.values()), "embed queries")
    with transaction.atomic(), connection.cursor() as cursor:
        create_index(cursor, products, product_vectors)
        runs = run_systems(cursor, queries, query_vectors)
        cursor.execute(f"DROP TABLE {TABLE}")

    judgements = {query_id: judged.judgements[query_id] for query_id in query_ids}
    return {
        "n": len(query_ids),
        "n_with_relevant": sum(1 for q in query_ids if relevant_items(judgements[q], RELEVANT_THRESHOLD)),
        "metrics": score_rankings(runs["rrf"], judgements),
        "baselines": {name: score_rankings(runs[name], judgements) for name in ("postgres_fts", "dense_untuned")},
        "seconds": round(time.monotonic() - started, 1),
        "config": {
            "model": f"reciprocal-rank fusion (k={RRF_K}) of postgres_fts and dense_untuned",
            "products_indexed": len(products),
            "judged_products_missing_from_catalogue": sum(
                1 for q in query_ids for uid in judgements[q] if uid not in catalogue
            ),
            "relevant_threshold": RELEVANT_THRESHOLD,
            "ndcg_gain": "relevance (unjudged: 0)",
            "top_k": TOP_K,
            "encoder": str(model_path),
            "device": str(encoder.device),
            "limit_products": options.get("limit_products"),
            "limit_queries": options.get("limit_queries"),
            "seed": options.get("seed", 7),
        },
    }
