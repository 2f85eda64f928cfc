"""``manage.py split_dataset NAME``: every app's splitter behind the one command, on tiny folders."""

from __future__ import annotations

import csv
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backbone import registry

RETAIL_HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])


def write_movielens(folder: Path) -> None:
    """6 users rating 5 movies each, one tag each."""
    write_csv(
        folder / "movies.csv", ["movieId", "title", "genres"], [[m, f"Movie {m} (1999)", "Drama"] for m in range(9)]
    )
    ratings = [[u, (u + i) % 9, 4.0, 1000 * u + i] for u in range(1, 7) for i in range(5)]
    write_csv(folder / "ratings.csv", ["userId", "movieId", "rating", "timestamp"], ratings)
    write_csv(
        folder / "tags.csv",
        ["userId", "movieId", "tag", "timestamp"],
        [[u, u % 9, "fun", 1000 * u] for u in range(1, 7)],
    )


def write_folder(name: str, folder: Path) -> None:
    """A tiny folder laid out like ``../shared/data`` holds dataset ``name``."""
    if name == "homedepot":
        write_csv(folder / "products.csv", ["product_uid", "product_title"], [[p, f"Thing {p}"] for p in range(5)])
        write_csv(folder / "queries.csv", ["query_id", "query"], [[f"q{i}", f"thing {i}"] for i in range(10)])
        write_csv(
            folder / "labels.csv", ["query_id", "product_uid", "relevance"], [[f"q{i}", i % 5, 2] for i in range(10)]
        )
    elif name in ("movielens", "movielens_ctr"):
        write_movielens(folder)
    elif name == "online_retail":
        rows = [
            [500000 + 10 * c + b, "10001", "MUG", 2, f"2011-0{b + 1}-01 10:00:00", "1.25", 12000 + c]
            for c in range(4)
            for b in range(2)
        ]
        write_csv(folder / "transactions.csv", RETAIL_HEADER, rows)
        write_csv(folder / "items.csv", ["StockCode", "Description"], [["10001", "MUG"]])
    elif name == "banking77":
        write_csv(folder / "train.csv", ["text", "category"], [[f"t{i}", f"c{i % 2}"] for i in range(10)])
    elif name == "clinc150":
        write_csv(folder / "train.csv", ["text", "intent"], [[f"t{i}", f"i{i % 2}"] for i in range(10)])
        write_csv(folder / "val.csv", ["text", "intent"], [["v", "i0"]])
    elif name == "ipinyou":
        write_csv(folder / "impressions.csv", ["row_id", "click", "region"], [[i, i % 2, "r"] for i in range(10)])


MOVIELENS_FILES = {f"{side}/{name}" for side in ("train", "test") for name in ("ratings.csv", "movies.csv", "tags.csv")}
LAYOUTS = {
    "homedepot": {f"{s}/{n}" for s in ("train", "test") for n in ("products.csv", "queries.csv", "labels.csv")}
    | {"split.json"},
    "movielens": MOVIELENS_FILES,
    "online_retail": {f"{s}/{n}" for s in ("train", "test") for n in ("transactions.csv", "items.csv")},
    "banking77": {"train/train.csv", "test/test.csv"},
    "clinc150": {"train/train.csv", "train/val.csv", "test/test.csv"},
    "movielens_ctr": {"train/ratings.csv", "train/movies.csv", "train/tags.csv", "test/ratings.csv"},
    "ipinyou": {"train/impressions.csv", "test/impressions.csv"},
}


def split(name: str, source: Path, out: Path, *extra: str) -> dict:
    stdout = StringIO()
    call_command("split_dataset", name, "--data-dir", str(source), "--out", str(out), *extra, stdout=stdout)
    return json.loads(stdout.getvalue())


def test_every_app_registers_its_splitters():
    assert set(registry.SPLITTERS) == set(LAYOUTS)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_dataset_splits_through_the_one_command_into_its_layout(name, tmp_path):
    write_folder(name, tmp_path / "src")

    summary = split(name, tmp_path / "src", tmp_path / "out")

    assert summary["dataset"] == name and summary["out"] == str(tmp_path / "out")
    written = {str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert written == LAYOUTS[name]
    again = split(name, tmp_path / "src", tmp_path / "again")
    assert {k: v for k, v in again.items() if k != "out"} == {k: v for k, v in summary.items() if k != "out"}


def test_ipinyou_holds_out_the_last_test_fraction_of_rows(tmp_path):
    write_folder("ipinyou", tmp_path / "src")

    summary = split("ipinyou", tmp_path / "src", tmp_path / "out", "--test-fraction", "0.3")

    assert (summary["train_rows"], summary["test_rows"], summary["test_clicks"]) == (7, 3, 2)
    with open(tmp_path / "out" / "test" / "impressions.csv", newline="") as fh:
        assert [row["row_id"] for row in csv.DictReader(fh)] == ["7", "8", "9"]


def test_unknown_dataset_names_the_known_ones(tmp_path):
    with pytest.raises(CommandError, match="unknown dataset 'weather'; known: banking77, clinc150, homedepot"):
        split("weather", tmp_path, tmp_path / "out")


def test_test_fraction_outside_zero_and_one_is_refused(tmp_path):
    write_folder("banking77", tmp_path / "src")
    with pytest.raises(CommandError, match="--test-fraction must be between 0 and 1"):
        split("banking77", tmp_path / "src", tmp_path / "out", "--test-fraction", "1.5")


def test_a_split_inside_the_source_folder_is_refused(tmp_path):
    write_folder("movielens", tmp_path / "src")
    with pytest.raises(CommandError, match="is inside --data-dir"):
        split("movielens", tmp_path / "src", tmp_path / "src" / "out")
    assert not (tmp_path / "src" / "out").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("homedepot", "queries.csv: file not found"),
        ("online_retail", "transactions.csv: file not found"),
        ("clinc150", "train.csv: file not found"),
        ("movielens_ctr", "ratings.csv: file not found"),
    ],
)
def test_a_missing_file_is_a_command_error_naming_it(name, message, tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(CommandError, match=message):
        split(name, tmp_path / "src", tmp_path / "out")


def test_a_missing_column_is_a_command_error_naming_it(tmp_path):
    write_csv(tmp_path / "src" / "train.csv", ["text", "category"], [["hi", "greet"]])
    with pytest.raises(CommandError, match=r"missing columns \['intent'\]"):
        split("clinc150", tmp_path / "src", tmp_path / "out")
