"""``manage.py split_dataset homedepot --data-dir DIR --out OUT``: carve a dev train/test split.

Splits by query (seeded), so no query text is on both sides; every label follows its query.
The catalogue (``products.csv``) is not split: it is copied to both sides, so each side is laid
out like ``../shared/data/NAME/`` and can be handed to ``manage.py evaluate``. Use it to make a
development test set from the shared data without touching the real holdout.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from catalog.importers import DatasetError, ImportOptions, read_csv

# dataset -> (catalogue file, queries file, labels file), all keyed by ``query_id``
LAYOUTS: dict[str, tuple[str, str, str]] = {"homedepot": ("products.csv", "queries.csv", "labels.csv")}


def normalise_query(text: str) -> str:
    """Return the form under which two query strings count as the same text (case, spacing)."""
    return " ".join(text.casefold().split())


def read_rows(path: Path, required: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Return (header, rows) of a CSV file that must have the ``required`` columns."""
    rows = [row for _, row in read_csv(path, required, ImportOptions(progress=False))]
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    return header, rows


def write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    """Write ``rows`` as a UTF-8 CSV with ``header`` (columns in the source's order)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def choose_test_queries(queries: list[dict[str, str]], fraction: float, seed: int) -> set[str]:
    """Return the query ids of the test side: a seeded ``fraction`` of the distinct query texts."""
    groups: dict[str, list[str]] = {}
    for row in queries:
        groups.setdefault(normalise_query(row["query"]), []).append(row["query_id"])
    texts = sorted(groups)
    random.Random(seed).shuffle(texts)
    n_test = round(len(texts) * fraction)
    return {query_id for text in texts[:n_test] for query_id in groups[text]}


class Command(BaseCommand):
    help = "Split a judged-query dataset by query into OUT/train and OUT/test (seeded; catalogue copied)."

    def add_arguments(self, parser):
        """Declare the dataset name, its folder, the output folder, the test fraction and the seed."""
        parser.add_argument("name", help="Dataset: " + ", ".join(sorted(LAYOUTS)))
        parser.add_argument("--data-dir", required=True, type=Path)
        parser.add_argument("--out", required=True, type=Path)
        parser.add_argument("--test-fraction", type=float, default=0.2)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, name, data_dir, out, test_fraction, seed, **options):
        """Write OUT/train and OUT/test; print a JSON summary (also written to OUT/split.json)."""
        if name not in LAYOUTS:
            raise CommandError(f"unknown dataset {name!r}; known: {', '.join(sorted(LAYOUTS))}")
        if not data_dir.is_dir():
            raise CommandError(f"--data-dir {data_dir} is not a folder")
        if not 0.0 < test_fraction < 1.0:
            raise CommandError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
        if out.resolve().is_relative_to(data_dir.resolve()):
            raise CommandError(f"--out {out} is inside --data-dir; write the split elsewhere")
        products_file, queries_file, labels_file = LAYOUTS[name]
        try:
            query_header, queries = read_rows(data_dir / queries_file, ["query_id", "query"])
            label_header, labels = read_rows(data_dir / labels_file, ["query_id"])
        except DatasetError as exc:
            raise CommandError(str(exc)) from None
        if not (data_dir / products_file).is_file():
            raise CommandError(f"{data_dir / products_file}: file not found")

        test_ids = choose_test_queries(queries, test_fraction, seed)
        summary: dict[str, object] = {
            "dataset": name,
            "source": str(data_dir),
            "seed": seed,
            "test_fraction": test_fraction,
        }
        for side, in_test in (("train", False), ("test", True)):
            folder = out / side
            folder.mkdir(parents=True, exist_ok=True)
            side_queries = [row for row in queries if (row["query_id"] in test_ids) == in_test]
            side_labels = [row for row in labels if (row["query_id"] in test_ids) == in_test]
            write_rows(folder / queries_file, query_header, side_queries)
            write_rows(folder / labels_file, label_header, side_labels)
            shutil.copyfile(data_dir / products_file, folder / products_file)
            summary[side] = {"queries": len(side_queries), "labels": len(side_labels)}
        (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.stdout.write(json.dumps(summary))
