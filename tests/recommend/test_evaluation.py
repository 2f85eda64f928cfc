"""``manage.py split_dataset movielens|online_retail`` and ``manage.py evaluate recommend`` on small dataset folders."""

from __future__ import annotations

import csv
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from backbone.models import ModelVersion
from catalog.models import Event, Product
from recommend import datasets

pytestmark = pytest.mark.django_db


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def movielens_dir(tmp_path: Path) -> Path:
    """40 users; even users watch movies 1-10 in order, odd users 11-20, each starting somewhere."""
    folder = tmp_path / "ml"
    movies = [[m, f"Movie {m} ({1990 + m})", "Drama" if m <= 10 else "Comedy"] for m in range(1, 21)]
    write_csv(folder / "movies.csv", ["movieId", "title", "genres"], movies)
    ratings = []
    for u in range(1, 41):
        base = 1 if u % 2 == 0 else 11
        start = u % 3
        for step, m in enumerate(range(base + start, base + start + 7)):
            ratings.append([u, m, 4.0, 1_000_000 + u * 1000 + step])
    write_csv(folder / "ratings.csv", ["userId", "movieId", "rating", "timestamp"], ratings)
    write_csv(
        folder / "tags.csv",
        ["userId", "movieId", "tag", "timestamp"],
        [[2, 9, "slow", 1_002_000], [2, 4, "fine", 1_001_000]],
    )
    return folder


@pytest.fixture
def retail_dir(tmp_path: Path) -> Path:
    """30 customers with three invoices each; items of one 'family' are bought together."""
    folder = tmp_path / "or"
    header = [
        "row_id",
        "InvoiceNo",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "UnitPrice",
        "CustomerID",
        "Country",
    ]
    rows, row_id, invoice = [], 0, 500000
    for c in range(30):
        family = c % 3
        for basket in range(3):
            invoice += 1
            for j in range(3):
                code = f"{family}{(basket * 3 + j + c) % 8:04d}"
                rows.append(
                    [
                        row_id,
                        invoice,
                        code,
                        f"ITEM {code}",
                        2,
                        f"2011-0{basket + 1}-{10 + c % 9} 10:00:00",
                        "1.25",
                        12000 + c,
                        "UK",
                    ]
                )
                row_id += 1
    rows.append([row_id, "C999999", "10000", "ITEM 10000", -1, "2011-05-01 10:00:00", "1.25", 12000, "UK"])
    rows.append([row_id + 1, 600000, "POST", "POSTAGE", 1, "2011-05-01 10:00:00", "18", "", "UK"])
    write_csv(folder / "transactions.csv", header, rows)
    codes = sorted({r[2] for r in rows if r[2] != "POST"})
    write_csv(folder / "items.csv", ["StockCode", "Description"], [[c, f"ITEM {c}"] for c in codes])
    return folder


def split(name: str, source: Path, out: Path) -> dict:
    stdout = StringIO()
    call_command("split_dataset", name, "--data-dir", str(source), "--out", str(out), stdout=stdout)
    return json.loads(stdout.getvalue())


def evaluate(name: str, folder: Path, *extra: str) -> dict:
    stdout = StringIO()
    call_command(
        "evaluate",
        "recommend",
        "--dataset",
        name,
        "--train-dir",
        str(folder / "train"),
        "--test-dir",
        str(folder / "test"),
        *extra,
        stdout=stdout,
    )
    return json.loads(stdout.getvalue())


def test_movielens_split_holds_out_each_users_last_rating_and_revealing_tags(movielens_dir: Path, tmp_path: Path):
    counts = split("movielens", movielens_dir, tmp_path / "split")
    assert counts == {"dataset": "movielens", "out": str(tmp_path / "split"), "train": 240, "test": 40, "users": 40}
    test = datasets.read_movielens(tmp_path / "split" / "test", catalogue_dir=tmp_path / "split" / "train")
    train = datasets.read_movielens(tmp_path / "split" / "train")
    last_train = {u: max(t for t, _, _ in rows) for u, rows in train.histories().items()}
    assert all(t > last_train[u] for u, t in zip(test.user, test.time))
    assert (tmp_path / "split" / "test" / "tags.csv").read_text().count("slow") == 1


def test_retail_split_holds_out_the_last_basket_and_keeps_one_invoice_customers(retail_dir: Path, tmp_path: Path):
    counts = split("online_retail", retail_dir, tmp_path / "split")
    assert counts["customers_held_out"] == 30
    test = datasets.read_online_retail(tmp_path / "split" / "test")
    targets = datasets.held_out_targets("online_retail", test)
    assert len(targets) == 30 and all(len(items) == 3 for items in targets.values())
    # the later cancellation of customer 12000 went to the test side with the last basket
    assert "C999999" in (tmp_path / "split" / "test" / "transactions.csv").read_text()


@pytest.mark.parametrize("name", ["movielens", "online_retail"])
def test_evaluation_reports_the_model_and_every_baseline_and_writes_nothing(
    name, movielens_dir, retail_dir, tmp_path, tiny_active_version
):
    source = movielens_dir if name == "movielens" else retail_dir
    split(name, source, tmp_path / "split")
    before = (Product.objects.count(), Event.objects.count(), ModelVersion.objects.count())
    report = evaluate(name, tmp_path / "split", "--set", "candidates=10")
    assert report["task"] == "recommend" and report["n"] > 0
    assert set(report["baselines"]) == {"popularity", "item_knn", "als", "ease", "content"}
    for metrics in [report["metrics"], *report["baselines"].values()]:
        assert {"hr@10", "ndcg@10", "mrr", "recall@10", "coverage", "segments"} <= set(metrics)
        assert 0.0 <= metrics["ndcg@10"] <= 1.0
    # the structure is learnable: the project's model beats popularity on it
    assert report["metrics"]["ndcg@10"] > report["baselines"]["popularity"]["ndcg@10"]
    assert (Product.objects.count(), Event.objects.count(), ModelVersion.objects.count()) == before


def test_a_missing_file_is_a_clear_error(tmp_path: Path):
    from django.core.management.base import CommandError

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(CommandError, match="ratings.csv"):
        call_command(
            "evaluate",
            "recommend",
            "--dataset",
            "movielens",
            "--train-dir",
            str(tmp_path / "a"),
            "--test-dir",
            str(tmp_path / "b"),
            stdout=StringIO(),
        )
