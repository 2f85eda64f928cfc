"""Search evaluation behind ``manage.py evaluate search --dataset homedepot``.

Indexes the train folder's catalogue into a TEMPORARY table of the current PostgreSQL session
(full text: tsvector + GIN; typos: pg_trgm GIN; semantic: pgvector HNSW, cosine), so the
operator's catalogue and embeddings are never read or written, trains the learned ranker on the
train folder's labels, and measures the test folder's judged queries.

The project's model (``metrics``) is the serving pipeline of :mod:`search.services` on that
table: the query is corrected against the catalogue's vocabulary, three PostgreSQL legs
(full text OR-query ranked by ``ts_rank``, trigram ``word_similarity``, HNSW cosine of the
fine-tuned encoder) give up to 250 candidates, and a LightGBM lambdarank model
(:class:`search.ml.Ranker`) trained on the train folder's labels reorders them.

The encoder is fine-tuned first, with the ``search`` task of the shared multi-task trainer
(in-batch and hard negatives, :class:`search.ml.SearchContrastiveTask`) on the train folder's
judged queries that the ranker does not train on (options ``finetune`` (default true),
``finetune_epochs`` 1, ``finetune_lr`` 5e-5, ``finetune_batch_size`` 32, ``finetune_max_pairs``
20000, ``finetune_queries``); the products are then embedded with it. ``components`` reports
the fine-tuned dense leg alone. Baselines, same run and same index:

- ``bm25_tantivy``: BM25 of the tantivy search engine library (English stemming), OR of the words;
- ``postgres_fts``: PostgreSQL full text alone (OR of the words, ``ts_rank(tsv, q, 1)``);
- ``dense_untuned``: the un-tuned base encoder over pgvector, top 100 by cosine distance;
- ``rrf``: reciprocal-rank fusion (k=60) of the last two.

Metrics, averaged over test queries with at least one label: ``ndcg@10`` with gain = graded
relevance (unjudged products gain 0); ``recall@100`` and ``mrr`` (first relevant hit in the top
100) where "relevant" means relevance >= 2.0; ``typo_ndcg@10``: ndcg@10 of the same queries with
one seeded random character edit in one word of 5+ letters (:func:`search.ml.add_typo`).

The ranker trains on the train folder's judged queries (a seeded sample of ``train_queries``,
default 3000; 10% of them held out for early stopping), with typo'd copies of a share of them
(``train_typo_fraction``) so that it also learns what a corrected or misspelt query looks like.
"""

from __future__ import annotations

import hashlib
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
from backbone.services import base_model_path, ensure_migrated
from catalog.importers import DatasetError, ImportOptions, read_csv
from search import ml
from search.metrics import ndcg_at_k, recall_at_k, reciprocal_rank, relevant_items

logger = logging.getLogger(__name__)

DATASETS = ("homedepot",)
RELEVANT_THRESHOLD = 2.0
NDCG_K = 10
TOP_K = 100
TRIGRAM_K = 50
RRF_K = 60
EMBED_BATCH_SIZE = 64
TABLE = "search_eval_products"  # a TEMPORARY table: private to this session, gone after the evaluation
WORD = re.compile(r"\w+")
BASELINES = ("bm25_tantivy", "postgres_fts", "dense_untuned", "rrf")
DENSE_COLUMNS = ("embedding", "base_embedding")  # fine-tuned encoder, un-tuned encoder


class EvaluationInputError(ValueError):
    """A dataset folder lacks a file or a column the evaluation needs."""


@dataclass
class JudgedQueries:
    """Queries (id -> text) and their graded judgements (id -> {product uid: relevance})."""

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


def load_judged_queries(folder: Path) -> JudgedQueries:
    """Return the folder's queries that have at least one label, with their judgements."""
    texts = {row["query_id"]: row["query"] for row in read_table(folder / "queries.csv", ["query_id", "query"])}
    judgements: dict[str, dict[str, float]] = {}
    for row in read_table(folder / "labels.csv", ["query_id", "product_uid", "relevance"]):
        if row["query_id"] in texts:
            try:
                relevance = float(row["relevance"])
            except ValueError:
                raise EvaluationInputError(f"{folder / 'labels.csv'}: bad relevance {row['relevance']!r}") from None
            judgements.setdefault(row["query_id"], {})[row["product_uid"]] = relevance
    return JudgedQueries(texts={qid: texts[qid] for qid in texts if qid in judgements}, judgements=judgements)


def sample_queries(judged: JudgedQueries, limit: int | None, seed: int) -> list[str]:
    """Return the ids of the queries to use: all, or a seeded sample of ``limit``, sorted."""
    ids = sorted(judged.texts)
    if limit is not None and limit < len(ids):
        ids = sorted(random.Random(seed).sample(ids, limit))
    return ids


def select_products(catalogue: dict[str, str], judged: list[JudgedQueries], limit: int | None) -> dict[str, str]:
    """Return the products to index: all, or the first ``limit`` plus every product judged in ``judged``.

    Keeping the judged products makes a small index still meaningful (the answers are in it).
    """
    if limit is None:
        return catalogue
    chosen = dict(list(catalogue.items())[:limit])
    for queries in judged:
        for labels in queries.judgements.values():
            for uid in labels:
                if uid in catalogue:
                    chosen[uid] = catalogue[uid]
    return chosen


def subset(judged: JudgedQueries, ids: list[str]) -> JudgedQueries:
    return JudgedQueries({q: judged.texts[q] for q in ids}, {q: judged.judgements[q] for q in ids})


# --- the temporary index --------------------------------------------------------------------


def vector_literal(vector: np.ndarray) -> str:
    """Return pgvector's text form of a 1-d float vector: ``[x1,x2,...]``."""
    return "[" + ",".join(map(repr, vector.tolist())) + "]"


def embed(encoder: Encoder, texts: Sequence[str], desc: str) -> np.ndarray:
    """Embed ``texts`` in batches of 64 with a progress bar on stderr."""
    with tqdm(total=len(texts), desc=desc, unit=" texts", file=sys.stderr, mininterval=5.0) as bar:
        return encoder.encode(texts, batch_size=EMBED_BATCH_SIZE, progress=bar.update)


def embed_cached(encoder: Encoder, model_path: Path, texts: list[str], cache_dir: str | None) -> np.ndarray:
    """Embed product texts, reusing ``cache_dir/<hash>.npz`` when the same model embedded the same texts."""
    if not cache_dir:
        return embed(encoder, texts, "embed products")
    digest = hashlib.sha256(("\x00".join([str(model_path), str(encoder.max_length), *texts])).encode()).hexdigest()
    path = Path(cache_dir) / f"search-eval-{digest[:24]}.npz"
    if path.exists():
        return np.load(path, allow_pickle=False)["vectors"]
    vectors = embed(encoder, texts, "embed products")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, vectors=vectors)
    return vectors


def create_index(cursor, products: dict[str, str], vectors: np.ndarray, base_vectors: np.ndarray) -> None:
    """Create and fill the temporary product table with GIN (full text, trigram) and HNSW indexes.

    ``vectors`` are the fine-tuned encoder's (column ``embedding``), ``base_vectors`` the un-tuned
    one's (column ``base_embedding``, for the dense baseline). Call inside a transaction, and drop
    the table before it ends: on an error the rollback removes it.
    """
    cursor.execute(
        f"""CREATE TEMPORARY TABLE {TABLE} (
            uid text PRIMARY KEY,
            title text NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', title)) STORED,
            embedding vector({vectors.shape[1]}) NOT NULL,
            base_embedding vector({base_vectors.shape[1]}) NOT NULL
        )"""
    )
    with cursor.copy(f"COPY {TABLE} (uid, title, embedding, base_embedding) FROM STDIN") as copy:
        for (uid, title), vector, base in zip(products.items(), vectors, base_vectors, strict=True):
            copy.write_row((uid, title, vector_literal(vector), vector_literal(base)))
    # The HNSW build keeps its graph in maintenance_work_mem; 54k x 384 floats need more than the default.
    cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
    cursor.execute(f"CREATE INDEX ON {TABLE} USING gin (tsv)")
    cursor.execute(f"CREATE INDEX ON {TABLE} USING gin (lower(title) gin_trgm_ops)")
    for column in DENSE_COLUMNS:
        cursor.execute(
            f"CREATE INDEX ON {TABLE} USING hnsw ({column} vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
    cursor.execute(f"ANALYZE {TABLE}")
    # ef_search bounds how many rows an HNSW scan returns; it must reach LIMIT 100.
    cursor.execute("SET LOCAL hnsw.ef_search = %s", [max(TOP_K, 100)])
    cursor.execute("SET LOCAL pg_trgm.word_similarity_threshold = 0.5")


def title_lexemes(cursor) -> dict[str, list[str]]:
    """Return uid -> English lexemes of the title (PostgreSQL's stemming, as the index has them)."""
    cursor.execute(f"SELECT uid, tsvector_to_array(tsv) FROM {TABLE}")
    return dict(cursor.fetchall())


def query_lexemes(cursor, texts: Sequence[str]) -> list[list[str]]:
    """Return each text's English lexemes in the order they occur (PostgreSQL's stemming)."""
    cursor.execute(
        """SELECT t.i, coalesce(array(SELECT u.lexeme FROM unnest(to_tsvector('english', t.q)) u
                                     ORDER BY u.positions[1]), '{}')
           FROM unnest(%s::text[]) WITH ORDINALITY AS t(q, i) ORDER BY t.i""",
        [list(texts)],
    )
    return [lexemes for _, lexemes in cursor.fetchall()]


# --- the systems ----------------------------------------------------------------------------


def or_tsquery_text(query: str) -> str:
    """Return ``to_tsquery`` input that matches any word of ``query`` ('' when it has none).

    Only ``\\w+`` runs are kept, so no character of the query can break the tsquery syntax.
    """
    return " | ".join(WORD.findall(query))


def search_fts(cursor, query: str, limit: int = TOP_K) -> list[tuple[str, float]]:
    """Return up to ``limit`` (uid, ts_rank) ranked by PostgreSQL full text (OR of the query's words)."""
    text = or_tsquery_text(query)
    if not text:
        return []
    cursor.execute(
        f"""SELECT uid, ts_rank(tsv, q, 1) AS r FROM {TABLE}, to_tsquery('english', %s) AS q
            WHERE tsv @@ q ORDER BY r DESC, uid LIMIT %s""",
        [text, limit],
    )
    return cursor.fetchall()


def search_trigram(cursor, query: str, limit: int = TRIGRAM_K) -> list[str]:
    """Return up to ``limit`` uids whose title contains a close (trigram) match of the query."""
    query = query.lower().strip()
    if len(query) < 3:
        return []
    cursor.execute(
        f"""SELECT uid FROM {TABLE} WHERE %s <%% lower(title)
            ORDER BY word_similarity(%s, lower(title)) DESC, uid LIMIT %s""",
        [query, query, limit],
    )
    return [uid for (uid,) in cursor.fetchall()]


def search_dense(cursor, vector: np.ndarray, limit: int = TOP_K, column: str = "embedding") -> list[tuple[str, float]]:
    """Return the ``limit`` (uid, cosine similarity) nearest to ``vector`` in ``column`` (HNSW)."""
    if column not in DENSE_COLUMNS:
        raise ValueError(f"column must be one of {DENSE_COLUMNS}")
    cursor.execute(
        f"""SELECT uid, 1 - ({column} <=> %s::vector) FROM {TABLE}
            ORDER BY {column} <=> %s::vector LIMIT %s""",
        [vector_literal(vector)] * 2 + [limit],
    )
    return cursor.fetchall()


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K, limit: int = TOP_K) -> list[str]:
    """Fuse rankings by summing 1 / (k + rank) per item (Cormack et al. 2009); ties by id."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: (-scores[item], item))[:limit]


class TantivyBM25:
    """BM25 of the tantivy search engine library over product titles (English stemming), in memory."""

    def __init__(self, products: dict[str, str]):
        import tantivy

        builder = tantivy.SchemaBuilder()
        builder.add_text_field("uid", stored=True, tokenizer_name="raw")
        builder.add_text_field("title", stored=False, tokenizer_name="en_stem")
        self.index = tantivy.Index(builder.build())
        writer = self.index.writer(heap_size=100_000_000, num_threads=1)
        for uid, title in products.items():
            writer.add_document(tantivy.Document(uid=uid, title=title))
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()
        self.searcher = self.index.searcher()

    def search(self, query: str, limit: int = TOP_K) -> list[str]:
        """Return up to ``limit`` uids by BM25 (OR of the query's words)."""
        terms = WORD.findall(query.lower())
        if not terms:
            return []
        parsed = self.index.parse_query(" ".join(terms), ["title"])
        return [self.searcher.doc(address)["uid"][0] for _, address in self.searcher.search(parsed, limit).hits]


@dataclass
class SearchIndex:
    """What the project's pipeline needs besides the temporary table."""

    lexemes: dict[str, list[str]]
    stats: ml.LexiconStats
    corrector: ml.QueryCorrector
    titles: dict[str, str]


def gather_candidates(
    cursor, index: SearchIndex, query: str, corrected: str, vector: np.ndarray
) -> tuple[list[ml.Candidate], dict[str, list[str]]]:
    """Return the fused candidates of the three legs with their scores, and each leg's ranking."""
    lexical = search_fts(cursor, corrected)
    trigram = search_trigram(cursor, query)
    dense = search_dense(cursor, vector)
    legs = {"lexical": [u for u, _ in lexical], "trigram": trigram, "dense": [u for u, _ in dense]}
    order = list(dict.fromkeys(legs["lexical"] + legs["dense"] + legs["trigram"]))
    if not order:
        return [], legs
    cursor.execute(
        f"""SELECT uid, ts_rank(tsv, to_tsquery('english', %s), 1), similarity(%s, lower(title)),
                   word_similarity(%s, lower(title)), 1 - (embedding <=> %s::vector)
            FROM {TABLE} WHERE uid = ANY(%s)""",
        [or_tsquery_text(corrected), query.lower(), query.lower(), vector_literal(vector), order],
    )
    scores = {row[0]: row[1:] for row in cursor.fetchall()}
    ranks = {name: {uid: rank for rank, uid in enumerate(ranking, start=1)} for name, ranking in legs.items()}
    candidates = []
    for uid in order:
        ts_rank, trigram_sim, word_sim, cosine = scores[uid]
        candidates.append(
            ml.Candidate(
                key=uid, title=index.titles[uid], lexemes=index.lexemes[uid], ts_rank=ts_rank,
                trigram=trigram_sim, word_similarity=word_sim, cosine=cosine,
                ranks={name: r[uid] for name, r in ranks.items() if uid in r},
            )
        )  # fmt: skip
    return candidates, legs


@dataclass
class QueryRun:
    """One query's candidates and features (for training) and the baselines' rankings."""

    candidates: list[ml.Candidate]
    features: np.ndarray
    legs: dict[str, list[str]]


def run_queries(cursor, index: SearchIndex, texts: list[str], encoder: Encoder, desc: str) -> list[QueryRun]:
    """Run the pipeline's retrieval and feature extraction for each text (no ranking yet)."""
    corrected = [index.corrector.correct(text) for text in texts]
    vectors = embed(encoder, corrected, f"embed {desc}")
    lexemes = query_lexemes(cursor, corrected)
    runs = []
    for text, fixed, vector, query_lexeme in tqdm(
        zip(texts, corrected, vectors, lexemes, strict=True), total=len(texts), desc=desc, file=sys.stderr,
        mininterval=5.0,
    ):  # fmt: skip
        candidates, legs = gather_candidates(cursor, index, text, fixed, vector)
        features = ml.candidate_features(fixed, query_lexeme, candidates, index.stats)
        runs.append(QueryRun(candidates, features, legs))
    return runs


def baseline_rankings(cursor, bm25: TantivyBM25, texts: list[str], vectors: np.ndarray) -> dict[str, list[list[str]]]:
    """Return each baseline's ranking of each raw (uncorrected) text."""
    result: dict[str, list[list[str]]] = {name: [] for name in BASELINES}
    for text, vector in tqdm(
        zip(texts, vectors, strict=True), total=len(texts), desc="baselines", file=sys.stderr, mininterval=5.0
    ):
        fts = [uid for uid, _ in search_fts(cursor, text)]
        dense = [uid for uid, _ in search_dense(cursor, vector, column="base_embedding")]
        result["bm25_tantivy"].append(bm25.search(text))
        result["postgres_fts"].append(fts)
        result["dense_untuned"].append(dense)
        result["rrf"].append(reciprocal_rank_fusion([fts, dense]))
    return result


def rank_runs(ranker: ml.Ranker, runs: list[QueryRun]) -> list[list[str]]:
    """Return each query's candidates ordered by the ranker, best first, top 100."""
    rankings = []
    for run in runs:
        scores = ranker.predict(run.features)
        order = np.argsort(-scores, kind="stable")
        rankings.append([run.candidates[i].key for i in order[:TOP_K]])
    return rankings


def training_relevances(runs: list[QueryRun], judgements: list[dict[str, float]]) -> list[np.ndarray]:
    return [np.array([labels.get(c.key, 0.0) for c in run.candidates]) for run, labels in zip(runs, judgements)]


def fit_ranker(runs: list[QueryRun], judgements: list[dict[str, float]], seed: int, rounds: int) -> ml.Ranker:
    """Fit the lambdarank model on queries with candidates; 10% of them (seeded) for early stopping."""
    usable = [i for i, run in enumerate(runs) if len(run.candidates) > 1]
    random.Random(seed).shuffle(usable)
    n_valid = max(1, len(usable) // 10)
    valid, train = usable[:n_valid], usable[n_valid:]
    relevances = training_relevances(runs, judgements)
    return ml.Ranker.fit(
        [runs[i].features for i in train],
        [relevances[i] for i in train],
        [runs[i].features for i in valid],
        [relevances[i] for i in valid],
        rounds=rounds,
        seed=seed,
    )


# --- scoring --------------------------------------------------------------------------------


def score_rankings(rankings: Sequence[list[str]], judgements: Sequence[dict[str, float]]) -> dict[str, float]:
    """Return mean ndcg@10 over all queries, recall@100 and MRR over queries with a relevant product."""
    ndcg, recall, rr = [], [], []
    for ranking, judged in zip(rankings, judgements, strict=True):
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


def typo_ndcg(rankings: Sequence[list[str]], judgements: Sequence[dict[str, float]]) -> float:
    return round(float(np.mean([ndcg_at_k(r, j, NDCG_K) for r, j in zip(rankings, judgements, strict=True)])), 4)


def fine_tune(
    encoder: Encoder,
    judged: JudgedQueries,
    ids: list[str],
    products: dict[str, str],
    options: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Fine-tune ``encoder`` in place with the ``search`` task of the shared multi-task trainer.

    Trains on the ``ids`` queries' graded labels (in-batch and hard negatives); a tenth of them, at
    most 100 (seeded), are held out to report the task's judged NDCG@10 before and after.
    Returns what it did.
    """
    from backbone.multitask import MultiTaskTrainer, TrainingConfig

    rng = random.Random(seed)
    ids = list(ids)
    rng.shuffle(ids)
    n_held = min(100, len(ids) // 10)
    held, fit_ids = ids[:n_held], ids[n_held:]

    def labelled(qids: list[str]) -> list[tuple[str, dict[str, float]]]:
        return [
            (judged.texts[q], {products[u]: r for u, r in judged.judgements[q].items() if u in products}) for q in qids
        ]

    pairs = ml.relevance_pairs(labelled(fit_ids), rng)[: int(options.get("finetune_max_pairs", 20000))]
    task = ml.SearchContrastiveTask(pairs, [(q, labels) for q, labels in labelled(held) if len(labels) > 1])
    config = TrainingConfig(
        epochs=float(options.get("finetune_epochs", 1.0)),
        batch_size=int(options.get("finetune_batch_size", 32)),
        lr=float(options.get("finetune_lr", 5e-5)),
        head_lr=1e-3,
        seed=seed,
    )
    progress = tqdm(total=100, desc="fine-tune", unit="%", file=sys.stderr, mininterval=10.0)

    def report(fraction: float, message: str) -> None:
        progress.n = round(fraction * 100)
        progress.set_postfix_str(message[:60], refresh=True)

    result = MultiTaskTrainer(encoder, [task], config, progress=report).fit()
    progress.close()
    return {
        "queries": len(fit_ids),
        "pairs": len(pairs),
        "steps": result.steps,
        "seconds": result.seconds,
        "validation": result.metrics["search"],
        "validation_untuned": result.baselines["search"]["untuned"],
        **{k: getattr(config, k) for k in ("epochs", "batch_size", "lr")},
    }


def load_base_encoder() -> tuple[Path, Encoder]:
    """Return (path, encoder) of the un-tuned base encoder (not the active version)."""
    path = base_model_path()
    return path, Encoder.load(path, device=settings.BACKBONE_DEVICE, max_length=settings.BACKBONE_MAX_LENGTH)


def evaluate_search(*, dataset: str, train_dir: Path, test_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Index the train catalogue in a temporary table, train the ranker on train labels, measure the test queries.

    Options: ``limit_products``, ``limit_queries`` (test), ``train_queries`` (default 3000),
    ``train_typo_fraction`` (default 0.3), ``rounds`` (default 400), ``seed``, ``cache_dir``
    (reuse product embeddings between runs). Side effects: none that outlive the call
    (temporary table only, dropped before returning); reads no catalogue or model rows.
    """
    if dataset not in DATASETS:
        raise EvaluationInputError(f"search evaluation supports {DATASETS}, not {dataset!r}")
    ensure_migrated()  # the index needs pgvector and pg_trgm: fail now, not after the fine-tune
    started = time.monotonic()
    seed = int(options.get("seed", 7))
    catalogue = load_catalogue(Path(train_dir))
    test = load_judged_queries(Path(test_dir))
    train = load_judged_queries(Path(train_dir))
    test_ids = sample_queries(test, options.get("limit_queries"), seed)
    if not test_ids:
        raise EvaluationInputError(f"{test_dir}: no test query has a label")
    train_ids = sample_queries(train, options.get("train_queries", 3000), seed)
    if set(train.texts[q].casefold() for q in train_ids) & set(test.texts[q].casefold() for q in test_ids):
        logger.warning("some test query texts also occur in the train folder")
    # The encoder is fine-tuned on the train queries the ranker does not learn from, so that the
    # ranker sees the tuned cosine of unseen queries, as it will on the test queries.
    finetune_ids = [q for q in sorted(train.texts) if q not in set(train_ids)]
    if options.get("finetune_queries"):
        finetune_ids = sample_queries(subset(train, finetune_ids), int(options["finetune_queries"]), seed)
    finetune_judged = subset(train, finetune_ids)
    test, train = subset(test, test_ids), subset(train, train_ids)
    products = select_products(catalogue, [test, train], options.get("limit_products"))
    logger.info(
        "search evaluation: %d products, %d train and %d test queries", len(products), len(train_ids), len(test_ids)
    )

    rng = random.Random(seed)
    test_texts = [test.texts[q] for q in test_ids]
    typo_texts = [ml.add_typo(text, rng) for text in test_texts]
    train_texts = [train.texts[q] for q in train_ids]
    train_judgements = [train.judgements[q] for q in train_ids]
    typo_share = float(options.get("train_typo_fraction", 0.3))
    typo_train = [i for i in range(len(train_ids)) if rng.random() < typo_share]
    train_texts += [ml.add_typo(train_texts[i], rng) for i in typo_train]
    train_judgements += [train_judgements[i] for i in typo_train]
    test_judgements = [test.judgements[q] for q in test_ids]

    model_path, base_encoder = load_base_encoder()
    base_vectors = embed_cached(base_encoder, model_path, list(products.values()), options.get("cache_dir"))
    _, encoder = load_base_encoder()
    finetuned = None
    if options.get("finetune", True) and finetune_ids:
        finetuned = fine_tune(encoder, finetune_judged, finetune_ids, catalogue, options, seed)
        logger.info("search fine-tune: %s", finetuned)
    product_vectors = embed(encoder, list(products.values()), "embed products (fine-tuned)")
    with transaction.atomic(), connection.cursor() as cursor:
        create_index(cursor, products, product_vectors, base_vectors)
        lexemes = title_lexemes(cursor)
        index = SearchIndex(
            lexemes=lexemes,
            stats=ml.LexiconStats.from_lexemes(lexemes.values()),
            corrector=ml.QueryCorrector.from_texts(products.values()),
            titles=products,
        )
        train_runs = run_queries(cursor, index, train_texts, encoder, "train queries")
        test_runs = run_queries(cursor, index, test_texts, encoder, "test queries")
        typo_runs = run_queries(cursor, index, typo_texts, encoder, "typo queries")
        bm25 = TantivyBM25(products)
        clean_vectors = embed(base_encoder, test_texts, "embed raw test queries")
        typo_vectors = embed(base_encoder, typo_texts, "embed raw typo queries")
        baselines = baseline_rankings(cursor, bm25, test_texts, clean_vectors)
        typo_baselines = baseline_rankings(cursor, bm25, typo_texts, typo_vectors)
        tuned_dense = [[uid for uid, _ in search_dense(cursor, v)] for v in embed(encoder, test_texts, "embed tuned")]
        cursor.execute(f"DROP TABLE {TABLE}")

    ranker = fit_ranker(train_runs, train_judgements, seed, int(options.get("rounds", 400)))
    metrics = score_rankings(rank_runs(ranker, test_runs), test_judgements)
    metrics["typo_ndcg@10"] = typo_ndcg(rank_runs(ranker, typo_runs), test_judgements)
    baseline_metrics = {}
    for name in BASELINES:
        baseline_metrics[name] = score_rankings(baselines[name], test_judgements)
        baseline_metrics[name]["typo_ndcg@10"] = typo_ndcg(typo_baselines[name], test_judgements)
    bm25_ndcg = baseline_metrics["bm25_tantivy"][f"ndcg@{NDCG_K}"]
    components = {"dense_finetuned": score_rankings(tuned_dense, test_judgements)}
    return {
        "n": len(test_ids),
        "n_with_relevant": sum(1 for j in test_judgements if relevant_items(j, RELEVANT_THRESHOLD)),
        "metrics": metrics,
        "baselines": baseline_metrics,
        "components": components,
        "fine_tune": finetuned,
        "ratios": {
            "ndcg_vs_bm25": round(metrics[f"ndcg@{NDCG_K}"] / bm25_ndcg, 3) if bm25_ndcg else None,
            "typo_vs_clean": round(metrics["typo_ndcg@10"] / metrics[f"ndcg@{NDCG_K}"], 3)
            if metrics[f"ndcg@{NDCG_K}"]
            else None,
        },
        "seconds": round(time.monotonic() - started, 1),
        "config": {
            "model": "corrected query -> postgres full text + trigram + fine-tuned dense (HNSW) candidates"
            " -> LightGBM lambdarank",
            "ranker": {k: v for k, v in ranker.config.items() if k != "params"},
            "feature_importance": ranker.feature_importance(),
            "products_indexed": len(products),
            "train_queries": len(train_ids),
            "train_typo_copies": len(typo_train),
            "test_queries_changed_by_typo": sum(1 for a, b in zip(test_texts, typo_texts) if a != b),
            "judged_products_missing_from_catalogue": sum(
                1 for j in test_judgements for uid in j if uid not in catalogue
            ),
            "relevant_threshold": RELEVANT_THRESHOLD,
            "ndcg_gain": "relevance (unjudged: 0)",
            "top_k": TOP_K,
            "encoder": str(model_path),
            "device": str(encoder.device),
            "limit_products": options.get("limit_products"),
            "limit_queries": options.get("limit_queries"),
            "seed": seed,
        },
    }
