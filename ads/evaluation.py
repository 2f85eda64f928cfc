"""CTR evaluation behind ``manage.py evaluate ads --dataset ipinyou|movielens_ctr``.

Reads the train folder and the test folder directly (the operator's impressions are never
read or written). A dataset adapter turns each folder into :class:`~ads.ml.CtrData`; then the
served recipe (:func:`ads.ml.fit_ctr_model`, what ``manage.py train ads`` fits) trains on the
train folder, the model is saved and loaded back as serving loads it, and the loaded
:class:`~ads.ml.CtrModel` (its Platt calibration included) scores the test folder once.

- ``movielens_ctr``: every rating is an impression, a rating >= 4 is a click. Fields: the user
  as ``customer``, the movie as ``ad``, the hour of the rating (UTC), genres and tags (bags: the
  movie's tags in the train folder's ``tags.csv``, lower-cased), the decade of the title's year,
  and the crosses customer x genre and customer x decade; the movie title is the creative
  text, embedded once with the active backbone version (frozen), so the recipe adds the user's
  taste profiles as it does on the platform. Validation split (early stopping, Platt
  calibration): the last ``val_per_user`` ratings of each user in the train folder, the same
  "latest ratings" shape as a held-out test set.
- ``ipinyou``: the 16 categorical fields of ``impressions.csv``; no text. Validation split: the
  last 20 % of the train rows in file order (the most recent day). The AUC comes with a
  bootstrap 95 % interval because the holdout has only about 20 clicks.

Also in the same run on the same split: the recipe without any text-derived input (its AUC
difference is ``text_gain_auc``) and the baselines ``logistic_hashed`` (hashed one-hot fields,
MovieLens' user x genre crosses and the title embedding; C picked on validation) and
``lightgbm`` (same fields, categoricals native, setting and rounds picked on validation).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings

from ads.baselines import fit_hashed_logistic, fit_lightgbm
from ads.data import CtrData
from ads.datasets import latest_per_user
from ads.importers import FIELDS as IPINYOU_FIELDS
from ads.metrics import bootstrap_auc, ctr_metrics
from ads.ml import RECIPE_KEYS, CtrModel, fit_ctr_model
from backbone.evaluation import log, read_table

DATASETS = ("ipinyou", "movielens_ctr")
CLICK_RATING = 4.0
MOVIELENS_FIELDS = [
    {"name": "customer"},
    {"name": "ad"},
    {"name": "hour"},
    {"name": "genres", "kind": "bag", "max_len": 10},
    {"name": "tags", "kind": "bag", "max_len": 10},
    {"name": "decade"},
    {"name": "customer*genres", "kind": "cross", "of": ["customer", "genres"], "max_len": 10},
    {"name": "customer*decade", "kind": "cross", "of": ["customer", "decade"], "max_len": 1},
]
YEAR = re.compile(r"\((\d{4})\)\s*$")  # "Heat (1995)"
VAL_PER_USER = 5
# The recipe's parameters for iPinYou, picked on a dev split carved from the outer train folder
# (split_dataset ipinyou --data-dir <outer>/train) by dev-test AUC: fold rare IPs, domains and
# slots into one value and regularise the embeddings hard. Every bootstrap interval there is
# about +-0.1 wide, so this pick is weak evidence. The figures: bench/reports/ads-tuning.md.
IPINYOU_PARAMETERS = {
    "min_count": 20,
    "dim": 8,
    "first_order_lr": 1e-2,
    "embedding_l2": 1e-2,
    "batch_size": 1024,
    "seeds": 1,
}


# --- MovieLens CTR ---------------------------------------------------------------------------


def read_movies(train_dir: Path, test_dir: Path) -> tuple[dict[str, str], dict[str, list[str]], dict[str, list[str]]]:
    """Titles and genres of every movie (the test folder's too), and each movie's top tags in the train folder."""
    columns = ["movieId", "title", "genres"]
    movies = read_table(train_dir / "movies.csv", columns)
    if (test_dir / "movies.csv").exists():  # titles of movies only the test folder knows
        known = {m["movieId"] for m in movies}
        movies += [m for m in read_table(test_dir / "movies.csv", columns) if m["movieId"] not in known]
    genres = {m["movieId"]: [g for g in m["genres"].split("|") if g and g != "(no genres listed)"] for m in movies}
    tag_counts: dict[str, Counter[str]] = defaultdict(Counter)
    if (train_dir / "tags.csv").exists():
        for t in read_table(train_dir / "tags.csv", ["movieId", "tag"]):
            tag_counts[t["movieId"]][t["tag"].strip().lower()] += 1
    tags = {m: [t for t, _ in c.most_common(10)] for m, c in tag_counts.items()}
    return {m["movieId"]: m["title"] for m in movies}, genres, tags


def movielens_rows(ratings: list[dict[str, str]], titles: dict[str, str], genres, tags):
    """Turn rating rows into (feature rows in the recipe's terms, click labels)."""
    years = {m: int(match.group(1)) for m, title in titles.items() if (match := YEAR.search(title))}
    rows = [
        {
            "customer": r["userId"],
            "ad": r["movieId"],
            "hour": str(datetime.fromtimestamp(int(r["timestamp"]), tz=UTC).hour),
            "genres": genres.get(r["movieId"], []),
            "tags": tags.get(r["movieId"], []),
            "decade": str(years[r["movieId"]] // 10) if r["movieId"] in years else "",
        }
        for r in ratings
    ]
    return rows, np.asarray([1.0 if float(r["rating"]) >= CLICK_RATING else 0.0 for r in ratings])


def embed_texts(texts: list[str], options: dict[str, Any]) -> tuple[np.ndarray, str]:
    """Embed texts with the active backbone version (frozen); return vectors and the version name."""
    from backbone.services import get_active_version, load_encoder

    version = get_active_version()
    # the frozen embeddings of the same texts by the same weights never change: keep them between runs
    digest = hashlib.sha256("\n".join([version.path, *texts]).encode()).hexdigest()[:24]
    cache = Path(settings.STATE_DIR) / "cache" / f"ads-text-{digest}.npy"
    if cache.exists():
        log(f"text embeddings of backbone {version.name} from {cache}")
        return np.load(cache, allow_pickle=False), version.name
    encoder = load_encoder(version)
    started = time.monotonic()
    vectors = encoder.encode(texts, batch_size=int(options.get("embed_batch_size", 128)))
    log(f"embedded {len(texts)} texts with backbone {version.name} in {time.monotonic() - started:.0f}s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors, allow_pickle=False)
    return vectors, version.name


def movielens_data(train_dir: Path, test_dir: Path, options: dict[str, Any]) -> tuple[CtrData, ...]:
    """The MovieLens adapter: the folders as (train, validation, test) CtrData with the titles embedded."""
    titles, genres, tags = read_movies(train_dir, test_dir)
    columns = ["userId", "movieId", "rating", "timestamp"]
    train_ratings = read_table(train_dir / "ratings.csv", columns)
    test_ratings = read_table(test_dir / "ratings.csv", columns)
    if options.get("limit_queries"):
        test_ratings = test_ratings[: int(options["limit_queries"])]
    movie_ids = sorted(titles)
    position = {m: i for i, m in enumerate(movie_ids)}
    vectors, version_name = embed_texts([titles[m] for m in movie_ids] + [""], options)  # last: unknown movies

    def data(ratings: list[dict[str, str]]) -> CtrData:
        rows, labels = movielens_rows(ratings, titles, genres, tags)
        ids = np.fromiter((position.get(r["movieId"], len(movie_ids)) for r in ratings), np.int64, len(ratings))
        return CtrData(fields=MOVIELENS_FIELDS, rows=rows, labels=labels, text_ids=[ids], text_vectors=[vectors])

    all_train, test = data(train_ratings), data(test_ratings)
    early, late = latest_per_user(train_ratings, int(options.get("val_per_user", VAL_PER_USER)))
    return all_train.subset(np.asarray(early)), all_train.subset(np.asarray(late)), test, version_name


def run_movielens(train_dir: Path, test_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the recipe and the baselines on a MovieLens train/test folder pair."""
    train, val, test, version_name = movielens_data(train_dir, test_dir, options)
    extra = {"backbone_version": version_name, "text": "movie title (the creative); the user's taste profiles"}
    return evaluate_models(train, val, test, options, extra=extra)


# --- iPinYou ---------------------------------------------------------------------------------


def ipinyou_data(rows: list[dict[str, str]]) -> CtrData:
    """The iPinYou adapter: impressions (in row order) as CtrData of their 16 fields."""
    rows = sorted(rows, key=lambda r: int(r["row_id"]))
    for r in rows:
        if r["click"] not in ("0", "1"):
            raise ValueError(f"impressions.csv row {r['row_id']}: click must be 0 or 1")
    return CtrData(
        fields=[{"name": f} for f in IPINYOU_FIELDS],
        rows=[{f: r[f] for f in IPINYOU_FIELDS} for r in rows],
        labels=np.asarray([float(r["click"]) for r in rows]),
    )


def run_ipinyou(train_dir: Path, test_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the recipe (with the iPinYou parameters) and the baselines on an iPinYou folder pair."""
    columns = ["row_id", "click", *IPINYOU_FIELDS]
    all_train = ipinyou_data(read_table(train_dir / "impressions.csv", columns))
    test = ipinyou_data(read_table(test_dir / "impressions.csv", columns))
    cut = int(len(all_train) * (1 - float(options.get("val_fraction", 0.2))))
    train, val = all_train.subset(np.arange(cut)), all_train.subset(np.arange(cut, len(all_train)))
    extra = {"text": "none (iPinYou has no text fields)"}
    return evaluate_models(train, val, test, {**IPINYOU_PARAMETERS, **options}, extra=extra, bootstrap=True)


# --- shared ----------------------------------------------------------------------------------


def fit_served(train: CtrData, val: CtrData, options: dict[str, Any], name: str) -> CtrModel:
    """Fit the recipe, save the model and load it back as serving does; return the loaded model."""
    model = fit_ctr_model(train, val, options, progress=lambda line: log(f"{name} {line}"))
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder))
        return CtrModel.load(Path(folder))


def evaluate_models(
    train: CtrData,
    val: CtrData,
    test: CtrData,
    options: dict[str, Any],
    *,
    extra: dict[str, Any],
    bootstrap: bool = False,
) -> dict[str, Any]:
    """Fit the served recipe, its no-text ablation and the baselines; measure each on ``test``."""
    threads = int(options.get("threads", 1))
    torch.set_num_threads(threads)
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    models: dict[str, CtrModel] = {}

    def timed(name: str, fit) -> None:
        started = time.monotonic()
        scores[name] = fit()
        seconds[name] = round(time.monotonic() - started, 1)
        log(f"{name}: {ctr_metrics(test.labels, scores[name])} in {seconds[name]}s")

    def served(name: str, train: CtrData, val: CtrData, test: CtrData):
        models[name] = fit_served(train, val, options, name)
        return models[name].predict(test)

    with_text = bool(train.text_vectors)
    timed("served", lambda: served("served", train, val, test))
    if with_text:
        timed(
            "without_text",
            lambda: served("without_text", train.without_text(), val.without_text(), test.without_text()),
        )
    timed(
        "logistic_hashed",
        lambda: fit_hashed_logistic(train, val, seed=int(options.get("seed", 7)))(test),
    )
    timed("lightgbm", lambda: fit_lightgbm(train, val, seed=int(options.get("seed", 7)), threads=threads)(test))

    def measure(name: str) -> dict[str, Any]:
        metrics = ctr_metrics(test.labels, scores[name])
        if bootstrap:
            metrics.update(bootstrap_auc(test.labels, scores[name], seed=int(options.get("seed", 7))))
        return metrics

    return report(test, models, measure, seconds, extra, train_impressions=len(train), validation_impressions=len(val))


def report(test: CtrData, models: dict[str, CtrModel], measure, seconds, extra, **counts) -> dict[str, Any]:
    """The evaluator's JSON object: the served model's metrics, its ablation, the baselines, how each was fitted."""
    model = models["served"]
    config = {k: v for k, v in asdict(model.config).items() if k in RECIPE_KEYS}
    baselines = {name: measure(name) for name in ("logistic_hashed", "lightgbm")}
    result: dict[str, Any] = {
        "n": len(test),
        "model": f"ads.ml.CtrModel from fit_ctr_model: calibrated ensemble of {len(model.nets)} DeepFM networks"
        + (" + backbone creative embeddings + customer taste profiles" if model.config.profile_field else ""),
        "metrics": measure("served"),
        "baselines": baselines,
        "recipe": config,
        **counts,
        "test_clicks": int(test.labels.sum()),
        "fit_seconds": seconds,
        "training": {name: {"epochs": m.history, "platt": asdict(m.platt)} for name, m in models.items()},
        **extra,
    }
    if "without_text" in models:
        result["ablation_without_text"] = measure("without_text")
        result["text_gain_auc"] = round(result["metrics"]["auc"] - result["ablation_without_text"]["auc"], 4)
    best = max(baselines.values(), key=lambda m: m["auc"])
    result["auc_gain_over_best_baseline"] = round(result["metrics"]["auc"] - best["auc"], 4)
    return result


def run(*, dataset: str, train_dir: Path, test_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """The registered evaluator: dispatch on ``dataset``."""
    if dataset == "movielens_ctr":
        return run_movielens(Path(train_dir), Path(test_dir), options)
    if dataset == "ipinyou":
        return run_ipinyou(Path(train_dir), Path(test_dir), options)
    raise ValueError(f"unknown dataset {dataset!r}")
