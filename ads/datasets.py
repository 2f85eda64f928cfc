"""Splitting a CTR dataset folder (laid out like ``../shared/data/movielens_latest_small/`` or ``ipinyou_ctr/``).

Behind ``manage.py split_dataset movielens_ctr|ipinyou``: writes ``OUT/train`` (laid out like the
dataset folder) and ``OUT/test`` (the held-out rows), so that ``evaluate ads --train-dir OUT/train
--test-dir OUT/test`` never sees the real test set.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from catalog.importers import read_csv_table, write_csv_table

HELD_OUT_PER_USER = 3  # movielens_ctr: the latest ratings of each user held out


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


def split_movielens(source: Path, out: Path, test_fraction: float = 0.2, seed: int = 7) -> dict[str, int]:
    """Carve a dev split: each user's latest 3 ratings -> ``out/test/ratings.csv``.

    ``out/train`` gets the other ratings, ``movies.csv`` and the tags that do not reveal a
    held-out rating (tags on a held-out pair, or by that user at or after their first held-out
    rating). ``test_fraction`` and ``seed`` are unused: the holdout is by time.
    """
    columns = ["userId", "movieId", "rating", "timestamp"]
    _, ratings = read_csv_table(source / "ratings.csv", columns)
    early, late = latest_per_user(ratings, HELD_OUT_PER_USER)
    held = [ratings[i] for i in late]
    write_csv_table(out / "train" / "ratings.csv", columns, [ratings[i] for i in early])
    write_csv_table(out / "test" / "ratings.csv", columns, held)
    _, movies = read_csv_table(source / "movies.csv", ["movieId", "title", "genres"])
    write_csv_table(out / "train" / "movies.csv", ["movieId", "title", "genres"], movies)
    pairs = {(r["userId"], r["movieId"]) for r in held}
    first_held: dict[str, int] = {}
    for r in held:
        first_held[r["userId"]] = min(first_held.get(r["userId"], 1 << 62), int(r["timestamp"]))
    tag_columns = ["userId", "movieId", "tag", "timestamp"]
    _, tags = read_csv_table(source / "tags.csv", tag_columns)
    kept = [
        t
        for t in tags
        if (t["userId"], t["movieId"]) not in pairs and int(t["timestamp"]) < first_held.get(t["userId"], 1 << 62)
    ]
    write_csv_table(out / "train" / "tags.csv", tag_columns, kept)
    return {
        "train_ratings": len(early),
        "test_ratings": len(held),
        "tags_kept": len(kept),
        "tags_dropped": len(tags) - len(kept),
    }


def split_ipinyou(source: Path, out: Path, test_fraction: float = 0.2, seed: int = 7) -> dict[str, int]:
    """Carve a dev split: the last ``test_fraction`` of rows in file order -> ``out/test/impressions.csv``.

    ``seed`` is unused: the holdout is by file order (time).
    """
    columns, rows = read_csv_table(source / "impressions.csv", ["click"])
    cut = int(len(rows) * (1 - test_fraction))
    write_csv_table(out / "train" / "impressions.csv", columns, rows[:cut])
    write_csv_table(out / "test" / "impressions.csv", columns, rows[cut:])
    return {"train_rows": cut, "test_rows": len(rows) - cut, "test_clicks": sum(r["click"] == "1" for r in rows[cut:])}
