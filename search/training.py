"""What ``manage.py train search`` trains: the backbone's ``search`` task and the ranker of a backbone version.

Both learn from the same judged queries: graded labels (Home Depot: 1-3) and storefront clicks
(relevance 3 for the clicked product, unless a label says otherwise). Each query text goes to
one side only (:func:`split_queries`): the ranker's share is kept out of the backbone fine-tune,
so that the ranker learns what the tuned cosine says about queries the encoder has not seen, as
it will at serving time. The ranker's candidates and features come from
:func:`search.retrieval.retrieve` with the new version's encoder and embeddings, exactly as it is
served. The training job (``backbone.jobs``) calls :func:`fit_ranker` through the ``search``
:class:`~backbone.registry.AppTrainer` and activates the row it returns with the version.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from backbone import lifecycle
from backbone.metrics import ndcg_at_k
from search import ml, retrieval, services
from search.models import JudgedQuery, RelevanceLabel, SearchClick, SearchRanker

RANKER_DIRNAME = "search"
MIN_RANKER_QUERIES = 10
MAX_CLICKS = 100_000
DEFAULTS = {
    "search_ranker_share": 0.45,  # of the judged query texts: the ranker's side, the rest tunes the backbone
    "search_ranker_queries": 3000,  # at most this many of them (seeded sample)
    "search_ranker_typo_fraction": 0.3,  # typo'd copies, so it learns what a corrected query looks like
    "search_ranker_rounds": 400,
    # how much higher than the untrained fusion's its held-out NDCG@10 must be for the ranker to serve
    "search_ranker_min_gain": 0.0,
    # the most search batches in one fine-tune, whatever the epochs another task asks for (the intent
    # recipe asks for 5). A search batch (32 queries, 64 titles) costs 4-12 s on 2 shared cores, about
    # 8x an intent batch: 150 keep the fine-tune near 15 minutes there (a GPU takes the full 458 of Home Depot)
    "search_max_steps": 150,
}
VALIDATION_SHARE = 0.1  # of the ranker side's query texts (a stable hash), held out of its training
VALIDATION_LIMIT = 500  # the most of them a scheduled retraining's gate scores
MIN_VALIDATION = 10
Progress = Callable[[float, str], None]


def option(parameters: dict[str, Any], name: str) -> Any:
    """Return a training parameter of the job (``--set KEY=VALUE``), or its default."""
    return type(DEFAULTS[name])(parameters.get(name, DEFAULTS[name]))


def training_summary() -> str:
    """Return what the database holds to train search on ('' when nothing): ``AppTrainer.data``."""
    labels = RelevanceLabel.objects.count()
    clicks = SearchClick.objects.count()
    if not labels and not clicks:
        return ""
    return f"{JudgedQuery.objects.count():,} judged queries ({labels:,} labels), {clicks:,} search clicks"


def judged_queries() -> dict[str, dict[int, float]]:
    """Return query text -> {product id: graded relevance}, from labels and then clicks (relevance 3)."""
    judged: dict[str, dict[int, float]] = {}
    for text, product_id, relevance in RelevanceLabel.objects.values_list("query__text", "product_id", "relevance"):
        judged.setdefault(text, {})[product_id] = relevance
    for text, product_id in SearchClick.objects.values_list("query__text", "product_id")[:MAX_CLICKS]:
        judged.setdefault(text, {}).setdefault(product_id, 3.0)
    return judged


def split_queries(texts: list[str], share: float) -> tuple[list[str], list[str]]:
    """Return (backbone side, ranker side) of ``texts``: a stable hash of each normalised text decides.

    With too few texts for both sides (a tiny shop), both sides get every text.
    """
    on_ranker_side = {t for t in texts if zlib.crc32(services.normalize_query(t).encode()) % 1000 < share * 1000}
    ranker = [t for t in texts if t in on_ranker_side]
    backbone = [t for t in texts if t not in on_ranker_side]
    if len(ranker) < MIN_RANKER_QUERIES or not backbone:
        return list(texts), list(texts)
    return backbone, ranker


def is_validation_query(text: str) -> bool:
    """Whether ``text`` is held out of the ranker's training (a salted stable hash of the normalised text,
    so every training, and the gate, holds out the same queries)."""
    return zlib.crc32(("validation " + services.normalize_query(text)).encode()) % 1000 < VALIDATION_SHARE * 1000


def build_training_task(parameters: dict[str, Any]) -> ml.SearchContrastiveTask:
    """Build the ``search`` task of a multi-task fine-tune from the backbone side of the judged queries.

    Positives: products judged >= 2.33 for a query (clicks count as 3); hard negatives: products
    judged <= 1.67 for the same query. 5% of the queries (seeded, at most 200) are held out for
    validation. Parameters: ``search_max_pairs``, ``search_max_steps``, ``search_weight``, ``seed``.
    """
    from catalog.models import Product

    rng = random.Random(parameters.get("seed", 13))
    judged = judged_queries()
    queries, _ = split_queries(sorted(judged), option(parameters, "search_ranker_share"))
    titles = dict(Product.objects.filter(id__in={p for q in queries for p in judged[q]}).values_list("id", "title"))
    rng.shuffle(queries)
    n_valid = min(200, max(1, len(queries) // 20)) if len(queries) > 20 else 0
    by_text = [(q, {titles[p]: r for p, r in judged[q].items() if p in titles}) for q in queries]
    validation = [(q, labels) for q, labels in by_text[:n_valid] if len(labels) > 1]
    pairs = ml.relevance_pairs(by_text[n_valid:], rng)
    if parameters.get("search_max_pairs"):
        pairs = pairs[: int(parameters["search_max_pairs"])]
    if len(pairs) < 2:
        raise ValueError("the search task needs at least 2 relevant query-product pairs (labels or clicks)")
    return ml.SearchContrastiveTask(
        pairs,
        validation,
        weight=float(parameters.get("search_weight", 1.0)),
        max_steps=option(parameters, "search_max_steps") or None,
    )


def validation_examples(judged: dict[str, dict[int, float]]) -> list[tuple[str, dict[int, float]]]:
    """Return the ranker side's held-out queries (:func:`is_validation_query`, at most VALIDATION_LIMIT) and
    their judgements: no ranker trains on them; its fit and a scheduled retraining's gate score on them."""
    _, texts = split_queries(sorted(judged), DEFAULTS["search_ranker_share"])
    held_out = [t for t in texts if is_validation_query(t)]
    if len(held_out) < MIN_VALIDATION or len(texts) - len(held_out) < MIN_RANKER_QUERIES:
        return []  # a shop too small to hold queries out: the ranker trains on all of them
    return [(t, judged[t]) for t in held_out[:VALIDATION_LIMIT]]


Examples = list[tuple[str, dict[int, float]]]


def ranker_examples(parameters: dict[str, Any]) -> tuple[Examples, Examples, int]:
    """Return the ranker's training (query text, judgements), typo'd copies included, the held-out ones
    (:func:`validation_examples`), and how many typo'd copies.

    The training ones are a seeded sample of the ranker side's queries that are not held out.
    """
    rng = random.Random(parameters.get("seed", 7))
    judged = judged_queries()
    _, texts = split_queries(sorted(judged), option(parameters, "search_ranker_share"))
    validation = validation_examples(judged)
    held_out = {t for t, _ in validation}
    texts = [t for t in texts if t not in held_out]
    rng.shuffle(texts)
    examples = [(t, judged[t]) for t in texts[: option(parameters, "search_ranker_queries")]]
    if len(examples) < MIN_RANKER_QUERIES:
        raise ValueError(f"the search ranker needs at least {MIN_RANKER_QUERIES} judged or clicked queries")
    share = option(parameters, "search_ranker_typo_fraction")
    typos = [(ml.add_typo(text, rng), labels) for text, labels in examples if rng.random() < share]
    seen = {text for text, _ in examples} | held_out  # no typo'd copy that is a query already, or held out
    typos = [(text, labels) for text, labels in typos if text not in seen]
    return examples + typos, validation, len(typos)


def ranker_features(
    version, examples: list[tuple[str, dict[int, float]]], progress: Progress
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return one (features, relevances) pair per example with 2+ candidates, retrieved as search serves.

    Uses backbone ``version``'s encoder and product embeddings (it need not be active).
    """
    from backbone.services import version_encoder

    retrieval.catalogue_vocabulary(refresh=True)
    prepared = [retrieval.correct_query(text) for text, _ in examples]
    vectors = version_encoder(version).encode([encoded for _, encoded in prepared])
    features, relevances = [], []
    with transaction.atomic(), connection.cursor() as cursor:
        for i, ((text, labels), (corrected, _), vector) in enumerate(zip(examples, prepared, vectors, strict=True)):
            retrieved = retrieval.retrieve(
                cursor, query=text, corrected=corrected, vector=vector, version_id=version.pk,
                filters=retrieval.SearchFilters(),
            )  # fmt: skip
            if len(retrieved.candidates) > 1:
                features.append(retrieved.features)
                relevances.append(np.array([labels.get(c.key, 0.0) for c in retrieved.candidates]))
            if i % 200 == 0:
                progress(0.9 * i / len(examples), f"ranker features {i:,}/{len(examples):,}")
    return features, relevances


def held_out_ndcg(scores: list[np.ndarray], relevances: list[np.ndarray]) -> float:
    """Return the mean NDCG@10 of ranking each query's candidates by ``scores`` (the metric's gains)."""
    ndcgs = []
    for score, relevance in zip(scores, relevances, strict=True):
        judged = {i: float(r) for i, r in enumerate(relevance) if r > 0}
        ndcgs.append(ndcg_at_k(list(np.argsort(-score, kind="stable")), judged, 10))
    return round(float(np.mean(ndcgs)), 4) if ndcgs else 0.0


def train_ranker(version, parameters: dict[str, Any], progress: Progress) -> tuple[ml.Ranker, dict[str, Any]]:
    """Fit the lambdarank model for ``version``; 10% of its training queries (seeded) early-stop it.
    Return it and its metrics.

    The metrics hold the NDCG@10 of the ranker and of the untrained fusion on the held-out queries
    (:func:`validation_examples`; the early-stopping ones in a shop too small to hold any out).
    """
    examples, validation, typo_copies = ranker_examples(parameters)
    features, relevances = ranker_features(version, examples, progress)
    order = list(range(len(features)))
    random.Random(parameters.get("seed", 7)).shuffle(order)
    n_valid = max(1, len(order) // 10)
    valid, train = order[:n_valid], order[n_valid:]
    progress(0.9, f"fitting the ranker on {len(train):,} queries")
    ranker = ml.Ranker.fit(
        [features[i] for i in train],
        [relevances[i] for i in train],
        [features[i] for i in valid],
        [relevances[i] for i in valid],
        rounds=option(parameters, "search_ranker_rounds"),
        seed=int(parameters.get("seed", 7)),
    )
    held_out_features, held_out = ranker_features(version, validation, progress)
    if not held_out_features:
        held_out_features, held_out = [features[i] for i in valid], [relevances[i] for i in valid]
    ranker.config.update(backbone_version=version.name, queries=len(features), typo_copies=typo_copies)
    metrics = {k: v for k, v in ranker.config.items() if k != "params"}
    metrics["held_out"] = {
        "queries": len(held_out),
        "ndcg@10": held_out_ndcg([ranker.predict(f) for f in held_out_features], held_out),
        "fusion_ndcg@10": held_out_ndcg([ml.fusion_scores(f) for f in held_out_features], held_out),
    }
    return ranker, {**metrics, "feature_importance": ranker.feature_importance()}


def validate_version(*, version, row: SearchRanker | None = None) -> tuple[str, float, int] | None:
    """NDCG@10 of search as served with backbone ``version`` and ranker ``row`` (else the active ranker
    when it was trained for ``version``, else the fusion scores) on the held-out validation queries of
    the ranker's side: the search score in a scheduled retraining's gate. None with too few of them."""
    examples = validation_examples(judged_queries())
    if row is None:
        active = lifecycle.active(SearchRanker)
        row = active if active is not None and active.backbone_version_id == version.pk else None
    features, relevances = ranker_features(version, examples, lambda fraction, message: None)
    if len(features) < MIN_VALIDATION:
        return None
    ranker = ml.Ranker.load(Path(row.path)) if row is not None else None
    scores = [ranker.predict(f) if ranker is not None else ml.fusion_scores(f) for f in features]
    return "ndcg@10", held_out_ndcg(scores, relevances), len(features)


def fit_ranker(
    *, version, parameters: dict[str, Any], job_id: int | None = None, progress: Progress | None = None
) -> SearchRanker | None:
    """Train the search ranker of backbone ``version`` (``AppTrainer.fit``); return its row, ready, to serve.

    Returns None (the row stays ready, not served; search then ranks with the fusion scores) when
    the ranker does not beat the fusion scores on its held-out queries by more than
    ``search_ranker_min_gain`` (NDCG@10; default 0, a negative value serves it anyway). Side effects: a
    SearchRanker row (failed, with the error, when training raises; the error is re-raised) and
    its folder ``MODELS_DIR/search/<name>/``. Activating it is the caller's step.
    """
    progress = progress or (lambda fraction, message: None)
    row = lifecycle.create_queued(
        SearchRanker, prefix="search", parameters=parameters, backbone_version=version, training_job_id=job_id
    )
    lifecycle.claim(SearchRanker, pk=row.pk)
    try:
        ranker, metrics = train_ranker(version, parameters, progress)
        folder = Path(settings.MODELS_DIR) / RANKER_DIRNAME / row.name
        ranker.save(folder)
    except Exception as exc:
        lifecycle.fail(SearchRanker, pk=row.pk, error=f"{type(exc).__name__}: {exc}")
        raise
    held_out = metrics["held_out"]
    verdict = f"held-out NDCG@10 {held_out['ndcg@10']} (untrained fusion {held_out['fusion_ndcg@10']})"
    lifecycle.append_log(
        SearchRanker, pk=row.pk, line=f"{metrics['queries']:,} queries, backbone {version.name}; {verdict}"
    )
    row = lifecycle.succeed(SearchRanker, pk=row.pk, path=str(folder), metrics=metrics)
    if held_out["ndcg@10"] - held_out["fusion_ndcg@10"] <= option(parameters, "search_ranker_min_gain"):
        progress(1.0, f"search ranker {row.name} does not beat the fusion scores ({verdict}): not served")
        return None
    progress(1.0, f"search ranker {row.name} ready: {verdict}")
    return row
