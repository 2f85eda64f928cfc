"""CTR evaluation behind ``manage.py evaluate ads --dataset ipinyou|movielens_ctr``.

Reads the train folder and the test folder directly (the operator's impressions are never
read or written), trains on the train folder only and measures on the test folder once.

- ``movielens_ctr``: every rating is an impression, a rating >= 4 is a click. Fields: user,
  movie, genres (bag), hour of the rating (UTC), tags (bag: the movie's tags in the train
  folder's ``tags.csv``, lower-cased), and text embedded once with the active backbone version
  (frozen): the movie title (the "creative") and, as the context, the user's taste: the mean
  embedding of the titles they liked and of those they did not, computed from the training part
  only. Validation split (early stopping and Platt calibration):
  the last ``val_per_user`` ratings of each user in the train folder, the same "latest
  ratings" shape as a held-out test set.
- ``ipinyou``: the 16 categorical fields of ``impressions.csv``; no text. Validation split:
  the last 20 % of the train rows in file order (the most recent day). The AUC comes with a
  bootstrap 95 % interval because the holdout has only about 20 clicks.

Models, all in the same run on the same split: the project's model (``metrics``: calibrated
DeepFM, with the text embeddings on MovieLens), the same DeepFM without text (MovieLens; its AUC
difference is ``text_gain_auc``), and the baselines ``logistic_hashed`` (logistic regression on
hashed one-hot ``field=value`` features, C picked on validation) and ``lightgbm`` (same fields,
categoricals native, early stopping on validation).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings

from ads.importers import FIELDS as IPINYOU_FIELDS
from ads.ml import (
    CtrConfig,
    CtrData,
    CtrModel,
    FieldSpec,
    bootstrap_auc,
    ctr_metrics,
    fit_hashed_logistic,
    fit_lightgbm,
)

logger = logging.getLogger(__name__)

DATASETS = ("ipinyou", "movielens_ctr")
CLICK_RATING = 4.0
MOVIELENS_FIELDS = [
    {"name": "user"},
    {"name": "movie"},
    {"name": "hour"},
    {"name": "genres", "kind": "bag", "max_len": 10},
    {"name": "tags", "kind": "bag", "max_len": 10},
]
# picked by validation log loss on the dev split (split_ads_dataset movielens_ctr --per-user 10,
# val_per_user=5): lr 2e-3/1e-3 and MLPs of (256, 128) overfit user x movie within 3 epochs; a
# slower rate, a faster one for the per-value biases (rare values get few updates) and a stronger
# L2 on the embedding tables did best. Differences between these settings were within about
# 0.002 AUC on 6,100 dev impressions, i.e. within noise.
MOVIELENS_DEFAULTS = {
    "lr": 5e-4,
    "first_order_lr": 2e-3,
    "hidden": [64],
    "dropout": 0.2,
    "embedding_l2": 3e-4,
    "patience": 3,
    "max_epochs": 40,
    "val_per_user": 5,
}


def log(message: str) -> None:
    print(f"[ads eval] {message}", file=sys.stderr, flush=True)


def read_rows(path: Path, required: list[str]) -> list[dict[str, str]]:
    """Read a CSV file; raise ValueError naming the file when a required column is missing."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} lacks columns {missing}")
        return list(reader)


# --- MovieLens CTR ---------------------------------------------------------------------------


def movielens_rows(ratings: list[dict[str, str]], genres: dict[str, list[str]], tags: dict[str, list[str]]):
    """Turn rating rows into (feature rows, labels, movie ids)."""
    rows, labels, movies = [], [], []
    for r in ratings:
        movie = r["movieId"]
        hour = datetime.fromtimestamp(int(r["timestamp"]), tz=UTC).hour
        rows.append(
            {
                "user": r["userId"],
                "movie": movie,
                "hour": str(hour),
                "genres": genres.get(movie, []),
                "tags": tags.get(movie, []),
            }
        )
        labels.append(1.0 if float(r["rating"]) >= CLICK_RATING else 0.0)
        movies.append(movie)
    return rows, np.asarray(labels), movies


def taste_sums(
    ratings: list[dict[str, str]], ids: np.ndarray, vectors: np.ndarray, *, liked: bool
) -> dict[str, tuple[np.ndarray, int]]:
    """Per user: the sum of the title embeddings of the movies they liked (or disliked), and how many."""
    sums: dict[str, tuple[np.ndarray, int]] = {}
    for r, i in zip(ratings, ids):
        if (float(r["rating"]) >= CLICK_RATING) == liked:
            total, count = sums.get(r["userId"], (np.zeros(vectors.shape[1], dtype=np.float64), 0))
            sums[r["userId"]] = (total + vectors[i], count + 1)
    return sums


def user_profiles(
    ratings: list[dict[str, str]],
    ids: np.ndarray,
    vectors: np.ndarray,
    sums: dict[str, tuple[np.ndarray, int]],
    *,
    liked: bool,
    leave_one_out: bool = False,
) -> np.ndarray:
    """Unit-length mean of each rating's user's liked (disliked) titles; ``leave_one_out`` drops the row's own title."""
    out = np.zeros((len(ratings), vectors.shape[1]), dtype=np.float32)
    for row, (r, i) in enumerate(zip(ratings, ids)):
        total, count = sums.get(r["userId"], (None, 0))
        if total is None:
            continue
        if leave_one_out and (float(r["rating"]) >= CLICK_RATING) == liked:
            total, count = total - vectors[i], count - 1
        norm = np.linalg.norm(total)
        if count > 0 and norm > 1e-9:
            out[row] = total / norm
    return out


def latest_per_user(ratings: list[dict[str, str]], k: int) -> tuple[list[int], list[int]]:
    """Split indices into (earlier, latest ``k`` of each user by timestamp, ties by larger movieId)."""
    by_user: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(ratings):
        by_user[r["userId"]].append(i)
    early, late = [], []
    for idx in by_user.values():
        idx.sort(key=lambda i: (int(ratings[i]["timestamp"]), int(ratings[i]["movieId"])))
        cut = len(idx) - k if len(idx) > k else len(idx)
        early.extend(idx[:cut])
        late.extend(idx[cut:])
    return sorted(early), sorted(late)


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


def run_movielens(train_dir: Path, test_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    options = {**MOVIELENS_DEFAULTS, **options}
    seed = int(options.get("seed") or 7)
    movies = read_rows(train_dir / "movies.csv", ["movieId", "title", "genres"])
    if (test_dir / "movies.csv").exists():  # titles of movies only the test folder knows
        known = {m["movieId"] for m in movies}
        movies += [
            m for m in read_rows(test_dir / "movies.csv", ["movieId", "title", "genres"]) if m["movieId"] not in known
        ]
    genres = {m["movieId"]: [g for g in m["genres"].split("|") if g and g != "(no genres listed)"] for m in movies}
    tag_counts: dict[str, Counter[str]] = defaultdict(Counter)
    if (train_dir / "tags.csv").exists():
        for t in read_rows(train_dir / "tags.csv", ["movieId", "tag"]):
            tag_counts[t["movieId"]][t["tag"].strip().lower()] += 1
    tags = {m: [t for t, _ in c.most_common(10)] for m, c in tag_counts.items()}
    train_ratings = read_rows(train_dir / "ratings.csv", ["userId", "movieId", "rating", "timestamp"])
    test_ratings = read_rows(test_dir / "ratings.csv", ["userId", "movieId", "rating", "timestamp"])
    if options.get("limit_queries"):
        test_ratings = test_ratings[: int(options["limit_queries"])]
    early, late = latest_per_user(train_ratings, int(options["val_per_user"]))

    titles = {m["movieId"]: m["title"] for m in movies}
    movie_ids = sorted(titles)
    position = {m: i for i, m in enumerate(movie_ids)}
    unknown_title = len(movie_ids)
    vectors, version_name = embed_texts([titles[m] for m in movie_ids] + [""], options)

    def title_ids(ratings: list[dict[str, str]]) -> np.ndarray:
        return np.fromiter(
            (position.get(r["movieId"], unknown_title) for r in ratings), dtype=np.int64, count=len(ratings)
        )

    def data(ratings: list[dict[str, str]], profiles: list[np.ndarray]) -> CtrData:
        rows, labels, _ = movielens_rows(ratings, genres, tags)
        ids = [title_ids(ratings)] + [np.arange(len(ratings))] * len(profiles)
        return CtrData(rows=rows, labels=labels, text_ids=ids, text_vectors=[vectors, *profiles])

    # more text slots: the user's taste as the mean embedding of the titles they liked, and of those
    # they did not, from the training part only (leave-one-out on the training rows themselves, so
    # no row sees its own label; validation rows see only the earlier part)
    early_ratings = [train_ratings[i] for i in early]
    late_ratings = [train_ratings[i] for i in late]
    profiles, test_profiles = [], []
    for liked in (True, False):
        early_sums = taste_sums(early_ratings, title_ids(early_ratings), vectors, liked=liked)
        train_profiles = np.zeros((len(train_ratings), vectors.shape[1]), dtype=np.float32)
        train_profiles[early] = user_profiles(
            early_ratings, title_ids(early_ratings), vectors, early_sums, liked=liked, leave_one_out=True
        )
        train_profiles[late] = user_profiles(late_ratings, title_ids(late_ratings), vectors, early_sums, liked=liked)
        all_sums = taste_sums(train_ratings, title_ids(train_ratings), vectors, liked=liked)
        profiles.append(train_profiles)
        test_profiles.append(user_profiles(test_ratings, title_ids(test_ratings), vectors, all_sums, liked=liked))

    all_train = data(train_ratings, profiles)
    train, val = all_train.subset(np.asarray(early)), all_train.subset(np.asarray(late))
    test = data(test_ratings, test_profiles)
    log(f"train {len(train)} / validation {len(val)} / test {len(test)} impressions")
    return evaluate_models(
        train,
        val,
        test,
        MOVIELENS_FIELDS,
        options,
        seed=seed,
        text_slots=1 + len(profiles),
        extra={
            "backbone_version": version_name,
            "text": "movie title; the user's liked and disliked titles (mean embeddings, training part only)",
        },
    )


# --- iPinYou ---------------------------------------------------------------------------------


def ipinyou_data(rows: list[dict[str, str]]) -> CtrData:
    rows = sorted(rows, key=lambda r: int(r["row_id"]))
    for r in rows:
        if r["click"] not in ("0", "1"):
            raise ValueError(f"impressions.csv row {r['row_id']}: click must be 0 or 1")
    features = [{f: r[f] for f in IPINYOU_FIELDS} for r in rows]
    return CtrData(rows=features, labels=np.asarray([float(r["click"]) for r in rows]))


def run_ipinyou(train_dir: Path, test_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    seed = int(options.get("seed") or 7)
    columns = ["row_id", "click", *IPINYOU_FIELDS]
    all_train = ipinyou_data(read_rows(train_dir / "impressions.csv", columns))
    test = ipinyou_data(read_rows(test_dir / "impressions.csv", columns))
    cut = int(len(all_train) * (1 - float(options.get("val_fraction", 0.2))))
    train, val = all_train.subset(np.arange(cut)), all_train.subset(np.arange(cut, len(all_train)))
    log(
        f"train {len(train)} / validation {len(val)} / test {len(test)} impressions, "
        f"{int(test.labels.sum())} test clicks"
    )
    fields = [{"name": f} for f in IPINYOU_FIELDS]
    # picked on the dev split (split_ads_dataset ipinyou: last 20 %, 22 clicks): strong L2 and rare
    # values folded into one (min_count 5) kept the DeepFM from memorising IPs and domains
    defaults = {
        "min_count": 5,
        "dim": 8,
        "hidden": [64],
        "lr": 1e-3,
        "first_order_lr": 1e-2,
        "embedding_l2": 1e-3,
        "patience": 3,
    }
    result = evaluate_models(
        train,
        val,
        test,
        fields,
        {**defaults, **options},
        seed=seed,
        text_slots=0,
        extra={"text": "none (iPinYou has no text fields)"},
        bootstrap=True,
    )
    return result


# --- shared ----------------------------------------------------------------------------------


def model_config(fields: list[dict[str, Any]], text_slots: int, options: dict[str, Any], seed: int) -> CtrConfig:
    """A CtrConfig from defaults overridden by ``--set`` options with the same names."""
    config = CtrConfig(fields=fields, text_slots=text_slots, seed=seed)
    for key in (
        "first_order_lr",
        "dim",
        "hidden",
        "dropout",
        "lr",
        "weight_decay",
        "embedding_l2",
        "batch_size",
        "max_epochs",
        "patience",
        "min_count",
    ):
        if key in options:
            setattr(config, key, options[key])
    return config


def evaluate_models(
    train: CtrData,
    val: CtrData,
    test: CtrData,
    fields: list[dict[str, Any]],
    options: dict[str, Any],
    *,
    seed: int,
    text_slots: int,
    extra: dict[str, Any],
    bootstrap: bool = False,
) -> dict[str, Any]:
    """Fit the project's model, its no-text ablation and the baselines; measure each on ``test``."""
    torch.set_num_threads(int(options.get("threads", 1)))
    specs = [FieldSpec(**f) for f in fields]
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    histories: dict[str, Any] = {}

    def timed(name: str, fit) -> None:
        started = time.monotonic()
        scores[name] = fit()
        seconds[name] = round(time.monotonic() - started, 1)
        log(f"{name}: {ctr_metrics(test.labels, scores[name])} in {seconds[name]}s")

    with_text = text_slots > 0
    configs = {}
    if with_text:
        configs["deepfm_text"] = model_config(fields, text_slots, options, seed)
    configs["deepfm"] = model_config(fields, 0, options, seed)
    for name, config in configs.items():

        def fit_model(config=config, name=name):
            model = CtrModel(config).fit(train, val, progress=lambda line, name=name: log(f"{name} {line}"))
            histories[name] = {"epochs": model.history, "platt": asdict(model.platt)}
            return model.predict(test)

        timed(name, fit_model)
    timed("logistic_hashed", lambda: fit_hashed_logistic(train, val, specs, seed=seed)(test))
    timed("lightgbm", lambda: fit_lightgbm(train, val, specs, seed=seed, threads=int(options.get("threads", 1)))(test))

    def measure(name: str) -> dict[str, Any]:
        metrics = ctr_metrics(test.labels, scores[name])
        if bootstrap:
            metrics.update(bootstrap_auc(test.labels, scores[name], seed=seed))
        return metrics

    main = "deepfm_text" if with_text else "deepfm"
    baselines = {name: measure(name) for name in ("logistic_hashed", "lightgbm")}
    result: dict[str, Any] = {
        "n": len(test),
        "model": "calibrated DeepFM" + (" + backbone text embeddings" if with_text else ""),
        "metrics": measure(main),
        "baselines": baselines,
        "train_impressions": len(train),
        "validation_impressions": len(val),
        "test_clicks": int(test.labels.sum()),
        "fit_seconds": seconds,
        "training": histories,
        **extra,
    }
    if with_text:
        without = measure("deepfm")
        result["ablation_without_text"] = without
        result["text_gain_auc"] = round(result["metrics"]["auc"] - without["auc"], 4)
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


# --- dev splits ------------------------------------------------------------------------------


def write_csv(path: Path, fieldnames: list[str], rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


def split_movielens(source: Path, out: Path, *, per_user: int = 3) -> dict[str, int]:
    """Carve a dev split: each user's latest ``per_user`` ratings -> ``out/test/ratings.csv``.

    ``out/train`` gets the other ratings, ``movies.csv`` and the tags that do not reveal a
    held-out rating (tags on a held-out pair, or by that user at or after their first held-out rating).
    """
    columns = ["userId", "movieId", "rating", "timestamp"]
    ratings = read_rows(source / "ratings.csv", columns)
    early, late = latest_per_user(ratings, per_user)
    held = [ratings[i] for i in late]
    write_csv(out / "train" / "ratings.csv", columns, [ratings[i] for i in early])
    write_csv(out / "test" / "ratings.csv", columns, held)
    movies = read_rows(source / "movies.csv", ["movieId", "title", "genres"])
    write_csv(out / "train" / "movies.csv", ["movieId", "title", "genres"], movies)
    pairs = {(r["userId"], r["movieId"]) for r in held}
    first_held: dict[str, int] = {}
    for r in held:
        first_held[r["userId"]] = min(first_held.get(r["userId"], 1 << 62), int(r["timestamp"]))
    tag_columns = ["userId", "movieId", "tag", "timestamp"]
    tags = read_rows(source / "tags.csv", tag_columns)
    kept = [
        t
        for t in tags
        if (t["userId"], t["movieId"]) not in pairs and int(t["timestamp"]) < first_held.get(t["userId"], 1 << 62)
    ]
    write_csv(out / "train" / "tags.csv", tag_columns, kept)
    return {
        "train_ratings": len(early),
        "test_ratings": len(held),
        "tags_kept": len(kept),
        "tags_dropped": len(tags) - len(kept),
    }


def split_ipinyou(source: Path, out: Path, *, fraction: float = 0.2) -> dict[str, int]:
    """Carve a dev split: the last ``fraction`` of rows in file order -> ``out/test/impressions.csv``."""
    path = source / "impressions.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    cut = int(len(rows) * (1 - fraction))
    write_csv(out / "train" / "impressions.csv", columns, rows[:cut])
    write_csv(out / "test" / "impressions.csv", columns, rows[cut:])
    return {"train_rows": cut, "test_rows": len(rows) - cut, "test_clicks": sum(r["click"] == "1" for r in rows[cut:])}
