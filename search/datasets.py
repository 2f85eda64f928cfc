"""Splitting a judged-query dataset folder (laid out like ``../shared/data/homedepot_search/``).

Behind ``manage.py split_dataset homedepot``: splits by query (seeded), so no query text is on
both sides; every label follows its query. The catalogue (``products.csv``) is not split: it is
copied to both sides, so each side can be handed to ``manage.py evaluate search``.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

from catalog.importers import DatasetError, read_csv_table, write_csv_table

PRODUCTS, QUERIES, LABELS = "products.csv", "queries.csv", "labels.csv"  # all keyed by ``query_id``


def normalise_query(text: str) -> str:
    """Return the form under which two query strings count as the same text (case, spacing)."""
    return " ".join(text.casefold().split())


def choose_test_queries(queries: list[dict[str, str]], fraction: float, seed: int) -> set[str]:
    """Return the query ids of the test side: a seeded ``fraction`` of the distinct query texts."""
    groups: dict[str, list[str]] = {}
    for row in queries:
        groups.setdefault(normalise_query(row["query"]), []).append(row["query_id"])
    texts = sorted(groups)
    random.Random(seed).shuffle(texts)
    n_test = round(len(texts) * fraction)
    return {query_id for text in texts[:n_test] for query_id in groups[text]}


def split_homedepot(data_dir: Path, out: Path, test_fraction: float, seed: int) -> dict[str, Any]:
    """Write OUT/train and OUT/test split by query text (catalogue copied to both) and OUT/split.json."""
    query_header, queries = read_csv_table(data_dir / QUERIES, ["query_id", "query"])
    label_header, labels = read_csv_table(data_dir / LABELS, ["query_id"])
    if not (data_dir / PRODUCTS).is_file():
        raise DatasetError(data_dir / PRODUCTS, None, "file not found")
    test_ids = choose_test_queries(queries, test_fraction, seed)
    summary: dict[str, Any] = {
        "dataset": "homedepot",
        "source": str(data_dir),
        "seed": seed,
        "test_fraction": test_fraction,
    }
    for side, in_test in (("train", False), ("test", True)):
        side_queries = [row for row in queries if (row["query_id"] in test_ids) == in_test]
        side_labels = [row for row in labels if (row["query_id"] in test_ids) == in_test]
        write_csv_table(out / side / QUERIES, query_header, side_queries)
        write_csv_table(out / side / LABELS, label_header, side_labels)
        shutil.copyfile(data_dir / PRODUCTS, out / side / PRODUCTS)
        summary[side] = {"queries": len(side_queries), "labels": len(side_labels)}
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
