"""``manage.py evaluate recommend --dataset movielens|online_retail --train-dir A --test-dir B``.

Trains on A's interactions (in memory, from the CSV files; the database is not used) with the
recipe ``manage.py train`` serves (:func:`recommend.ml.fit_recommender`, the same defaults), then,
for each customer of B, scores every item with :func:`recommend.ml.rank_scores` (what the API
calls), the customer's items in A removed, and scores the held-out item(s):

- MovieLens: the held-out unit is the customer's last rating.
- Online Retail: the held-out unit is the customer's last basket (its purchase lines); any of its
  items is a hit for HR@10; recall@10 = basket items in the top 10 / basket items. Items of the
  basket the customer already has in A are dropped from the target; a customer whose whole
  basket is repeats is skipped (counted in ``skipped``).

Items are those with interactions in A, as on the platform; a held-out item that A never saw
cannot be ranked by any model, but still counts in the customer's ideal DCG and recall.

Metrics: ``hr@10``, ``ndcg@10`` (binary gain, ideal = min(|basket|, 10) hits), ``mrr`` (full
ranking), ``recall@10``, ``coverage`` (distinct items in any top 10 / items). A customer with no
history in A gets the model's recent popularity (the API's fallback), popularity from baselines.
``segments.short`` repeats the metrics for customers with at most 5 events in A.

Baselines (same run, same items): popularity, item-kNN, ALS (``implicit``), EASE and content-only
(the backbone's text embeddings of the text the platform embeds). ``--set key=value`` overrides
fields of :class:`recommend.ml.HybridConfig` and ``als_factors``/``als_alpha``/``als_regularization``,
``ease_l2``, ``knn_neighbours``; ``--set baselines=false`` runs the project's model only.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from backbone.evaluation import log
from backbone.metrics import binary_ndcg_at_k, hit_rate_at_k, recall_at_k
from recommend import datasets
from recommend.ml import (
    ALSModel,
    ContentModel,
    EASEModel,
    History,
    ItemKNNModel,
    PopularityModel,
    Recommender,
    TrainSet,
    build_train_set,
    fit_recommender,
    rank_scores,
)

DATASETS = datasets.DATASETS
SHORT_HISTORY = 5
BATCH = 256

# The baselines' own settings, tuned on dev splits (NDCG@10; sweeps in the closing note of
# issue 4). Online Retail dev: EASE l2 in {50..4000} peaks at 500 (0.1183); item-kNN neighbours in
# {5..1000} peak at 20 (0.1053); ALS factors {32..256} x reg {0.05..100} x alpha {0.3..40} peaks at
# 128 / 10 / 1 (0.1098). MovieLens dev (shorter sweeps; one EASE fit takes minutes there): EASE l2
# 200 (0.0441) over 500 (0.0422); item-kNN neighbours {20, 100, 200, 500} peak at 20 (0.0378); ALS
# factors {64, 128} x reg {1, 10} x alpha {1, 10} peaks at 64 / 10 / 1 (0.0447).
BASELINE_DEFAULTS: dict[str, dict[str, Any]] = {
    "movielens": {
        "ease_l2": 200.0,
        "knn_neighbours": 20,
        "als_factors": 64,
        "als_regularization": 10.0,
        "als_alpha": 1.0,
    },
    "online_retail": {
        "ease_l2": 500.0,
        "knn_neighbours": 20,
        "als_factors": 128,
        "als_regularization": 10.0,
        "als_alpha": 1.0,
    },
}


@dataclass
class RankingMetrics:
    """Accumulates HR@k, NDCG@k (binary gain), MRR, recall@k and catalogue coverage over customers
    (the metrics of :mod:`backbone.metrics`)."""

    k: int = 10
    n_items: int = 0
    hits: list[float] = field(default_factory=list)
    ndcg: list[float] = field(default_factory=list)
    rr: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    shown: set[int] = field(default_factory=set)

    def add(self, scores: np.ndarray, targets: set[int], exclude: np.ndarray, missing: int = 0) -> None:
        """Rank every item by ``scores`` (stable: ties by index), drop ``exclude``, score the ``targets``;
        ``missing`` more target items could not be ranked at all (they count in the ideal and in recall)."""
        s = scores.astype(np.float64, copy=True)
        s[exclude] = -np.inf
        order = np.argsort(-s, kind="stable")
        self.shown.update(int(i) for i in order[: self.k])
        ranked = order[: len(s) - len(np.unique(exclude))]  # the excluded items rank last
        top, size = ranked[: self.k].tolist(), len(targets) + missing
        self.hits.append(hit_rate_at_k(top, targets, self.k))
        self.ndcg.append(binary_ndcg_at_k(top, targets, self.k, n_relevant=size))
        self.recall.append(recall_at_k(top, targets, self.k, n_relevant=size))
        found = np.flatnonzero(np.isin(ranked, list(targets)))  # MRR over the whole ranking, in numpy
        self.rr.append(1.0 / (int(found[0]) + 1) if len(found) else 0.0)

    def result(self) -> dict[str, float]:
        """Return the averages (rounded) and the count."""
        n = max(1, len(self.hits))
        k = self.k
        return {
            f"hr@{k}": round(sum(self.hits) / n, 4),
            f"ndcg@{k}": round(sum(self.ndcg) / n, 4),
            "mrr": round(sum(self.rr) / n, 4),
            f"recall@{k}": round(sum(self.recall) / n, 4),
            "coverage": round(len(self.shown) / max(1, self.n_items), 4),
            "n": len(self.hits),
        }


@dataclass
class EvaluationData:
    """The train set, the held-out targets (item indices) and per-customer history sizes."""

    train: TrainSet
    users: list[str]  # evaluated customers, in order
    histories: list[History]
    targets: list[set[int]]
    missing: list[int]  # held-out items A never saw, per customer
    n_events: list[int]
    skipped: int
    dataset: str = ""

    def head(self, n: int) -> None:
        """Keep the first ``n`` customers only (quick tries)."""
        self.users, self.histories, self.targets = self.users[:n], self.histories[:n], self.targets[:n]
        self.missing, self.n_events = self.missing[:n], self.n_events[:n]


def item_vectors(texts: list[str]) -> np.ndarray:
    """Embed item texts with the active backbone version (cached on disk per version and texts)."""
    from backbone.services import active_encoder

    version, encoder = active_encoder()
    digest = hashlib.sha256(("\n".join(texts) + f"@{version.name}:{version.path}").encode()).hexdigest()[:20]
    cache = Path(settings.STATE_DIR) / "cache" / f"recommend-text-{digest}.npy"
    if cache.exists():
        return np.load(cache, allow_pickle=False)
    started = time.monotonic()
    vectors = encoder.encode(texts, batch_size=64).astype(np.float32)
    log(f"embedded {len(texts)} item texts in {time.monotonic() - started:.0f}s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors, allow_pickle=False)
    return vectors


def product_texts(dataset: str, folder: Path) -> dict[str, str]:
    """Return item key -> the text the platform embeds for it: ``Product.text`` of the product that
    ``manage.py import_dataset`` makes of it (the catalogue importer's own rules)."""
    from catalog.importers import ImportOptions, read_movies, read_retail_items

    options = ImportOptions(progress=False)
    if dataset == "movielens" and (folder / "movies.csv").exists():
        return {str(movie): product.text for movie, product in read_movies(folder / "movies.csv", options).items()}
    if dataset == "online_retail" and (folder / "items.csv").exists():
        items, _ = read_retail_items(folder / "items.csv", options)
        return {code: title for code, title in items.items() if title}
    return {}


def build(
    dataset: str, train_dir: Path, test_dir: Path, embed: Callable[[list[str]], np.ndarray] | None = item_vectors
) -> EvaluationData:
    """Read both folders; index the items A has interactions with; build histories and held-out targets."""
    reader = datasets.READERS[dataset]
    train = reader(train_dir)
    test = reader(test_dir, catalogue_dir=train_dir)
    train_set, index = build_train_set(zip(train.user, train.item, train.time), train.extra_baskets)
    if embed:
        texts = product_texts(dataset, train_dir)
        train_set.item_vectors = embed([texts.get(k) or train.catalogue.get(k) or k for k in train_set.items])
    histories = dict(zip(train_set.customers, train_set.histories))
    data = EvaluationData(train_set, [], [], [], [], [], 0, dataset)
    targets_by_user = datasets.held_out_targets(dataset, test)
    for user in sorted(targets_by_user):
        h = histories.get(user, History.from_events([], []))
        wanted = targets_by_user[user] - {train_set.items[i] for i in h.items}
        if not wanted:
            data.skipped += 1
            continue
        target = {index[key] for key in wanted if key in index}
        data.users.append(user)
        data.histories.append(h)
        data.targets.append(target)
        data.missing.append(len(wanted) - len(target))
        data.n_events.append(len(h.items))
    return data


def measure(data: EvaluationData, model: Recommender, fallback: np.ndarray) -> dict[str, Any]:
    """Rank every item for every evaluated customer as the API does; return overall and short-history metrics."""
    n_items = data.train.n_items
    overall, short = RankingMetrics(n_items=n_items), RankingMetrics(n_items=n_items)
    for start in range(0, len(data.users), BATCH):
        batch = data.histories[start : start + BATCH]
        scores = rank_scores(model, batch, [h.items for h in batch])
        for j, h in enumerate(batch):
            row = fallback if len(h.items) == 0 else scores[j]
            u = start + j
            overall.add(row, data.targets[u], h.items, data.missing[u])
            if data.n_events[u] <= SHORT_HISTORY:
                short.add(row, data.targets[u], h.items, data.missing[u])
    return {**overall.result(), "segments": {"short": short.result()}}


def fit_baselines(data: EvaluationData, options: dict[str, Any]) -> dict[str, Recommender]:
    """Fit the baselines of the contract on the train set."""
    train = data.train
    options = {**BASELINE_DEFAULTS.get(data.dataset, {}), **options}
    models: dict[str, Recommender] = {
        "popularity": PopularityModel().fit(train),
        "item_knn": ItemKNNModel(int(options.get("knn_neighbours", 200))).fit(train),
        "als": ALSModel(
            factors=int(options.get("als_factors", 64)),
            regularization=float(options.get("als_regularization", 0.05)),
            alpha=float(options.get("als_alpha", 10.0)),
            iterations=int(options.get("als_iterations", 15)),
        ).fit(train, seed=int(options.get("seed") or 7)),
        "ease": EASEModel(float(options.get("ease_l2", 500.0))).fit(train),
    }
    if train.item_vectors is not None:
        models["content"] = ContentModel().fit(train)
    return models


def run(*, dataset: str, train_dir: Path, test_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """The evaluator registered for ``manage.py evaluate recommend``."""
    started = time.monotonic()
    try:
        data = build(
            dataset, Path(train_dir), Path(test_dir), embed=item_vectors if options.get("text", True) else None
        )
    except datasets.DatasetInputError as exc:
        raise ValueError(str(exc)) from None
    if options.get("limit_queries"):
        data.head(int(options["limit_queries"]))
    if not data.users:
        raise ValueError(f"no held-out customers with a rankable item in {test_dir}")
    model = fit_recommender(data.train, options)
    timings = {"train_s": round(time.monotonic() - started, 1)}
    report: dict[str, Any] = {"n": len(data.users), "skipped": data.skipped, "n_items": data.train.n_items}
    report["unrankable_targets"] = sum(data.missing)
    report["metrics"] = measure(data, model, model.popularity)
    report["baselines"] = {}
    if options.get("baselines", True):
        fallback = data.train.item_counts()
        for name, baseline in fit_baselines(data, options).items():
            report["baselines"][name] = measure(data, baseline, fallback)
    report["model"] = {"kind": model.kind, "config": asdict(model.config), "rankers": len(model.boosters)}
    report["timings"] = {**timings, "total_s": round(time.monotonic() - started, 1)}
    return report
