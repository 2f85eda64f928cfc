"""Search evaluation behind ``manage.py evaluate search --dataset homedepot``: what the API serves, measured.

It trains with the functions ``manage.py train search`` uses and ranks with the function the
API view calls, on the STATE_DIR's database (inside the command's transaction, which is always
rolled back):

1. the train folder is imported with the Home Depot importer (catalogue and judged queries;
   ``limit_products`` keeps the first N products plus every judged one, ``train_queries`` a
   seeded sample of the judged queries). A catalogue that is not empty is refused: the test
   queries would be ranked against products that are not the dataset's;
2. the catalogue is embedded with the base backbone (the registered index) and every test query
   goes through :func:`search.services.search_products` before any training
   (``baselines.served_untrained``: what a fresh platform serves), and in its ``lexical`` mode
   (``baselines.postgres_fts``); ``baselines.bm25_tantivy`` is BM25 of the tantivy engine
   (``en_stem``, OR of the words) over the same titles;
3. one training job is run as ``manage.py train search --inline`` runs it
   (:func:`backbone.jobs.run_training_job`: the backbone fine-tuned with the ``search`` task,
   products re-embedded, the ranker fitted by :func:`search.training.fit_ranker`, all activated
   together), with its model folders in a temporary ``MODELS_DIR``; options other than the
   evaluation's own are the job's parameters (``--set epochs=1``, ``--set search_ranker_queries=500``);
4. the test queries, and a copy of each with one seeded random character edit
   (:func:`search.ml.add_typo`), go through ``search_products`` again (``metrics``).

Metrics, averaged over the test queries: ``ndcg@10`` with gain 2^(relevance-1) - 1 (unjudged
products gain 0), ``recall@100`` and ``mrr`` over the first 100 results where "relevant" means
relevance >= 2, and ``typo_ndcg@10``.
"""

from __future__ import annotations

import csv
import logging
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.test.utils import override_settings
from tqdm import tqdm

from backbone.evaluation import EvaluationInputError, read_table
from backbone.metrics import ndcg_at_k, recall_at_k, reciprocal_rank, relevant_items
from catalog.importers import ImportOptions
from search import ml, retrieval, services

logger = logging.getLogger(__name__)

DATASETS = ("homedepot",)
RELEVANT_THRESHOLD = 2.0
NDCG_K = 10
TOP_K = 100
EVALUATION_OPTIONS = ("limit_products", "limit_queries", "train_queries", "untrained")
WORD = re.compile(r"\w+")


@dataclass
class JudgedQueries:
    """Queries (id -> text) and their graded judgements (id -> {product uid: relevance})."""

    texts: dict[str, str]
    judgements: dict[str, dict[str, float]]

    def subset(self, ids: Sequence[str]) -> JudgedQueries:
        """Return the queries ``ids`` only."""
        return JudgedQueries({q: self.texts[q] for q in ids}, {q: self.judgements[q] for q in ids})


# --- reading the folders --------------------------------------------------------------------


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


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """Write ``rows`` (dicts with the same keys) as a UTF-8 CSV."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["empty"])
        writer.writeheader()
        writer.writerows(rows)


def write_train_folder(
    train_dir: Path, out: Path, train: JudgedQueries, test: JudgedQueries, limit_products: int | None
) -> None:
    """Write the folder to import: the ``train`` queries with their labels, and the catalogue.

    With ``limit_products``: the first N products plus every product judged for a train or test
    query (so that a small catalogue still holds the answers).
    """
    products = read_table(train_dir / "products.csv", ["product_uid", "product_title"])
    if limit_products is not None:
        judged = {uid for queries in (train, test) for labels in queries.judgements.values() for uid in labels}
        products = [row for i, row in enumerate(products) if i < limit_products or row["product_uid"] in judged]
    write_rows(out / "products.csv", products)
    write_rows(out / "queries.csv", [{"query_id": q, "query": text} for q, text in train.texts.items()])
    labels = [
        {"query_id": q, "product_uid": uid, "relevance": str(relevance)}
        for q, labels in train.judgements.items()
        for uid, relevance in labels.items()
    ]
    write_rows(out / "labels.csv", labels)


def import_train_folder(train_dir: Path, train: JudgedQueries, test: JudgedQueries, options: dict) -> dict:
    """Import the train side into the (empty) catalogue with the Home Depot importer; return its counts."""
    from catalog.models import Product
    from search.importers import import_homedepot

    stored = Product.objects.count()
    if stored:
        raise EvaluationInputError(
            f"the catalogue of this STATE_DIR is not empty ({stored:,} products); evaluate on a fresh STATE_DIR "
            "(manage.py migrate on an empty one), so that only the dataset's products are ranked"
        )
    with tempfile.TemporaryDirectory(prefix="search-eval-") as folder:
        write_train_folder(train_dir, Path(folder), train, test, options.get("limit_products"))
        counts = import_homedepot(Path(folder), ImportOptions(progress=False))
    retrieval.catalogue_vocabulary(refresh=True)
    return counts


# --- the systems ----------------------------------------------------------------------------


def served_ranking(query: str, *, mode: str = "hybrid") -> list[str]:
    """Return the skus that ``GET /api/v1/search?q=QUERY`` ranks first (top 100), best first."""
    result = services.search_products(query=query.strip(), page_size=TOP_K, mode=mode, facets=False, log=False)
    return [hit.sku for hit in result.hits]


class TantivyBM25:
    """BM25 of the tantivy search engine library over product titles (English stemming), in memory."""

    def __init__(self, titles: dict[str, str]):
        import tantivy

        builder = tantivy.SchemaBuilder()
        builder.add_text_field("uid", stored=True, tokenizer_name="raw")
        builder.add_text_field("title", stored=False, tokenizer_name="en_stem")
        self.index = tantivy.Index(builder.build())
        writer = self.index.writer(heap_size=100_000_000, num_threads=1)
        for uid, title in titles.items():
            writer.add_document(tantivy.Document(uid=uid, title=title))
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()
        self.searcher = self.index.searcher()

    def search(self, query: str, limit: int = TOP_K) -> list[str]:
        """Return up to ``limit`` uids by BM25 (OR of the query's words); equal scores in uid order,
        so that the baseline is the same in every run (tantivy's own tie order is its segments')."""
        terms = WORD.findall(query.lower())
        if not terms:
            return []
        hits = self.searcher.search(self.index.parse_query(" ".join(terms), ["title"]), 10 * limit).hits
        tied = [(score, address) for score, address in hits if len(hits) <= limit or score >= hits[limit - 1][0]]
        ranked = sorted((-score, self.searcher.doc(address)["uid"][0]) for score, address in tied)
        return [uid for _, uid in ranked[:limit]]


def rankings(system: Callable[[str], list[str]], texts: list[str], desc: str) -> list[list[str]]:
    """Return ``system``'s ranking of each text, with a progress bar on stderr."""
    return [system(text) for text in tqdm(texts, desc=desc, file=sys.stderr, mininterval=10.0)]


def score_rankings(ranked: Sequence[list[str]], judgements: Sequence[dict[str, float]]) -> dict[str, float]:
    """Return mean ndcg@10 over all queries, recall@100 and MRR over queries with a relevant product."""
    ndcg, recall, rr = [], [], []
    for ranking, judged in zip(ranked, judgements, strict=True):
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


def measure(
    system: Callable[[str], list[str]], texts: list[str], typos: list[str], judgements: list[dict], desc: str
) -> dict[str, float]:
    """Return ``system``'s metrics on the clean test queries and its ndcg@10 on their typo'd copies."""
    metrics = score_rankings(rankings(system, texts, desc), judgements)
    typo = score_rankings(rankings(system, typos, f"{desc} (typos)"), judgements)
    return {**metrics, "typo_ndcg@10": typo[f"ndcg@{NDCG_K}"]}


# --- training ---------------------------------------------------------------------------------


def embed_base_catalogue() -> None:
    """Embed the imported catalogue with the base backbone (a fresh platform's first embeddings)."""
    from backbone.services import ensure_base_version, fill_indexes

    with tqdm(total=100, desc="embed (base)", unit="%", file=sys.stderr, mininterval=10.0) as bar:
        fill_indexes(
            version=ensure_base_version(), progress=lambda fraction, _: bar.update(round(fraction * 100) - bar.n)
        )


def train_as_served(parameters: dict[str, Any]) -> dict[str, Any]:
    """Run one ``search`` training job in this process, as ``manage.py train search --inline`` does.

    Returns the job's metrics once the new backbone version and ranker serve; raises RuntimeError
    when the job did not succeed.
    """
    from backbone import jobs
    from backbone.models import TrainingJob
    from backbone.services import start_training_job

    job = start_training_job(apps=["search"], tasks=["search"], parameters=parameters, enqueue=False)
    jobs.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    if job.status != TrainingJob.Status.SUCCEEDED:
        raise RuntimeError(f"the search training job {job.status}: {job.error}\n{job.log[-2000:]}")
    wait_until_served(job.result_version)
    return job.metrics


def wait_until_served(version, timeout: float = 30.0) -> None:
    """Return once this process's search encodes with backbone ``version`` (its re-check interval)."""
    from backbone.services import active_encoder

    deadline = time.monotonic() + timeout
    while active_encoder()[0].pk != version.pk:
        if time.monotonic() > deadline:
            raise RuntimeError(f"backbone {version.name} was activated but does not serve")
        time.sleep(0.2)


# --- the evaluation -------------------------------------------------------------------------


def read_split(train_dir: Path, test_dir: Path, options: dict[str, Any], seed: int):
    """Return the (sampled) train and test queries; warn when a query text is on both sides."""
    test = load_judged_queries(test_dir)
    test = test.subset(sample_queries(test, options.get("limit_queries"), seed))
    if not test.texts:
        raise EvaluationInputError(f"{test_dir}: no test query has a label")
    train = load_judged_queries(train_dir)
    train = train.subset(sample_queries(train, options.get("train_queries"), seed))
    if {t.casefold() for t in train.texts.values()} & {t.casefold() for t in test.texts.values()}:
        logger.warning("some test query texts also occur in the train folder")
    return train, test


def evaluate_search(*, dataset: str, train_dir: Path, test_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Import the train folder, measure what search serves before and after ``train search``; see the module doc.

    Options: ``limit_products``, ``limit_queries`` (test), ``train_queries``, ``untrained``
    (false skips the untrained baseline and its base embeddings), ``seed``; any other key is a
    training parameter. Side effects: none that outlive the command's rolled-back transaction.
    """
    from backbone.services import ensure_migrated

    if dataset not in DATASETS:
        raise EvaluationInputError(f"search evaluation supports {DATASETS}, not {dataset!r}")
    ensure_migrated()  # retrieval needs pgvector and pg_trgm: fail now, not after the fine-tune
    started, seed = time.monotonic(), int(options.get("seed", 7))
    train, test = read_split(Path(train_dir), Path(test_dir), options, seed)
    counts = import_train_folder(Path(train_dir), train, test, options)
    ids = sorted(test.texts)
    texts = [test.texts[q] for q in ids]
    rng = random.Random(seed)
    typos = [ml.add_typo(text, rng) for text in texts]
    judgements = [test.judgements[q] for q in ids]
    parameters = {k: v for k, v in options.items() if k not in EVALUATION_OPTIONS}
    with (  # model files (the serving encoders' too) in a folder of the run's own
        tempfile.TemporaryDirectory(prefix="search-eval-models-") as models_dir,
        override_settings(MODELS_DIR=Path(models_dir)),
    ):
        baselines = measure_baselines(texts, typos, judgements, untrained=bool(options.get("untrained", True)))
        training = train_as_served(parameters)
        metrics = measure(served_ranking, texts, typos, judgements, "served (trained)")
    return report(metrics, baselines, training, counts, judgements, texts, typos, seed, started)


def measure_baselines(texts: list[str], typos: list[str], judgements: list[dict], *, untrained: bool) -> dict:
    """Return the same-run baselines: tantivy BM25 and PostgreSQL full text, and search as served untrained."""
    from catalog.models import Product

    bm25 = TantivyBM25(dict(Product.objects.values_list("sku", "title")))
    baselines = {
        "bm25_tantivy": measure(bm25.search, texts, typos, judgements, "bm25 (tantivy)"),
        "postgres_fts": measure(
            lambda text: served_ranking(text, mode="lexical"), texts, typos, judgements, "postgres full text"
        ),
    }
    if untrained:
        embed_base_catalogue()
        baselines["served_untrained"] = measure(served_ranking, texts, typos, judgements, "served (untrained)")
    return baselines


def report(metrics, baselines, training, counts, judgements, texts, typos, seed, started) -> dict[str, Any]:
    """Return the evaluation's JSON object."""
    bm25 = baselines["bm25_tantivy"][f"ndcg@{NDCG_K}"]
    ndcg = metrics[f"ndcg@{NDCG_K}"]
    ratios = {
        "ndcg_vs_bm25": round(ndcg / bm25, 3) if bm25 else None,
        "typo_vs_clean": round(metrics["typo_ndcg@10"] / ndcg, 3) if ndcg else None,
    }
    if "served_untrained" in baselines and bm25:
        ratios["untrained_ndcg_vs_bm25"] = round(baselines["served_untrained"][f"ndcg@{NDCG_K}"] / bm25, 3)
    return {
        "n": len(texts),
        "n_with_relevant": sum(1 for j in judgements if relevant_items(j, RELEVANT_THRESHOLD)),
        "metrics": metrics,
        "baselines": baselines,
        "ratios": ratios,
        "training": training,
        "seconds": round(time.monotonic() - started, 1),
        "config": {
            "model": "search.services.search_products after manage.py train search",
            "imported": counts,
            "test_queries_changed_by_typo": sum(1 for a, b in zip(texts, typos, strict=True) if a != b),
            "relevant_threshold": RELEVANT_THRESHOLD,
            "ndcg_gain": "2^(relevance-1) - 1 (unjudged: 0)",
            "top_k": TOP_K,
            "seed": seed,
        },
    }
