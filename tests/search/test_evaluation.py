"""``manage.py split_dataset`` and ``manage.py evaluate search`` on real Home Depot data."""

from __future__ import annotations

import csv
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from backbone.models import ModelVersion, TrainingJob
from catalog.models import Product, ProductEmbedding
from search.models import JudgedQuery, RelevanceLabel, SearchRanker
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

SYSTEMS = ("bm25_tantivy", "postgres_fts", "served_untrained")
METRICS = ("ndcg@10", "recall@100", "mrr", "typo_ndcg@10")
ROWS = (Product, ProductEmbedding, ModelVersion, TrainingJob, SearchRanker, JudgedQuery, RelevanceLabel)


def read_column(path: Path, column: str) -> list[str]:
    """Return one column of a CSV file."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [row[column] for row in csv.DictReader(fh)]


@pytest.fixture
def split(data_dir: Path, tmp_path: Path) -> Path:
    """A seeded 80/20 query split of the real Home Depot data in ``tmp_path``."""
    out = tmp_path / "split"
    call_command(
        "split_dataset",
        "homedepot",
        "--data-dir",
        str(data_dir / "homedepot_search"),
        "--out",
        str(out),
        stdout=StringIO(),
    )
    return out


def evaluate(*args: str) -> dict:
    """Run ``manage.py evaluate`` and return the JSON object it printed (all of stdout)."""
    stdout = StringIO()
    call_command("evaluate", *args, stdout=stdout)
    return json.loads(stdout.getvalue())


def test_split_keeps_every_query_text_on_one_side(split: Path):
    train_queries = read_column(split / "train" / "queries.csv", "query")
    test_queries = read_column(split / "test" / "queries.csv", "query")
    assert not {q.casefold() for q in train_queries} & {q.casefold() for q in test_queries}
    assert len(test_queries) / (len(train_queries) + len(test_queries)) == pytest.approx(0.2, abs=0.01)
    test_ids = set(read_column(split / "test" / "queries.csv", "query_id"))
    assert set(read_column(split / "test" / "labels.csv", "query_id")) <= test_ids
    assert not set(read_column(split / "train" / "labels.csv", "query_id")) & test_ids
    assert (split / "train" / "products.csv").read_bytes() == (split / "test" / "products.csv").read_bytes()


def test_split_is_the_same_for_the_same_seed(data_dir: Path, split: Path, tmp_path: Path):
    again = tmp_path / "again"
    source = str(data_dir / "homedepot_search")
    call_command("split_dataset", "homedepot", "--data-dir", source, "--out", str(again), stdout=StringIO())
    assert (again / "test" / "labels.csv").read_bytes() == (split / "test" / "labels.csv").read_bytes()


@pytest.mark.slow
def test_search_evaluation_trains_as_served_and_writes_nothing(split: Path, tmp_path: Path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    before = [model.objects.count() for model in ROWS]
    report_file = tmp_path / "report.json"

    report = evaluate(
        "search",
        "--dataset", "homedepot",
        "--train-dir", str(split / "train"),
        "--test-dir", str(split / "test"),
        "--limit-products", "300",
        "--limit-queries", "40",
        "--set", "train_queries=160",
        "--set", "search_max_pairs=64",
        "--set", "search_ranker_rounds=50",
        "--set", "search_ranker_min_gain=-1",  # serve the ranker whatever its held-out gain, to measure it
        "--json", str(report_file),
    )  # fmt: skip

    assert report["task"] == "search" and report["dataset"] == "homedepot"
    assert report["n"] == 40 and report["config"]["imported"]["queries"] == 160
    assert set(report["baselines"]) == set(SYSTEMS)
    for metrics in [report["metrics"], *report["baselines"].values()]:
        assert set(metrics) == set(METRICS)
        assert all(0.0 <= metrics[name] <= 1.0 for name in METRICS)
    for system in SYSTEMS:
        assert report["baselines"][system]["ndcg@10"] > 0.2, system
    assert report["metrics"]["ndcg@10"] > 0.2
    # one training job as `train search` runs it: a fine-tuned backbone and a ranker for it
    assert report["training"]["backbone"].startswith("v")
    assert report["training"]["searchranker"]["queries"] > 20
    assert report["training"]["tasks"]["search"]["validation_queries"] > 0
    assert report["config"]["test_queries_changed_by_typo"] > 20
    assert report["ratios"]["ndcg_vs_bm25"] > 0 and report["ratios"]["untrained_ndcg_vs_bm25"] > 0
    assert json.loads(report_file.read_text()) == report
    assert [model.objects.count() for model in ROWS] == before
    assert not settings.MODELS_DIR.exists() or not any(settings.MODELS_DIR.iterdir())


def test_evaluation_refuses_a_catalogue_that_is_not_empty(split: Path):
    ProductFactory(sku="operator-product")
    with pytest.raises(CommandError, match=r"catalogue of this STATE_DIR is not empty \(1 products\)"):
        evaluate(
            "search", "--dataset", "homedepot", "--train-dir", str(split / "train"), "--test-dir", str(split / "test")
        )
    assert Product.objects.count() == 1 and JudgedQuery.objects.count() == 0


def test_unknown_task_is_a_command_error(tmp_path: Path):
    with pytest.raises(CommandError, match="unknown task 'weather'"):
        evaluate("weather", "--dataset", "homedepot", "--train-dir", str(tmp_path), "--test-dir", str(tmp_path))


def test_unsupported_dataset_is_a_command_error(tmp_path: Path):
    with pytest.raises(CommandError, match="cannot be evaluated on dataset 'movielens'"):
        evaluate("search", "--dataset", "movielens", "--train-dir", str(tmp_path), "--test-dir", str(tmp_path))


def test_missing_folder_is_a_command_error(tmp_path: Path):
    with pytest.raises(CommandError, match="--test-dir .* is not a folder"):
        evaluate("search", "--dataset", "homedepot", "--train-dir", str(tmp_path), "--test-dir", str(tmp_path / "nope"))


def test_missing_labels_file_is_a_command_error(tmp_path: Path):
    (tmp_path / "products.csv").write_text("product_uid,product_title\n1,Claw hammer\n")
    (tmp_path / "queries.csv").write_text("query_id,query\nq1,hammer\n")
    with pytest.raises(CommandError, match="labels.csv: file not found"):
        evaluate("search", "--dataset", "homedepot", "--train-dir", str(tmp_path), "--test-dir", str(tmp_path))


def test_split_of_an_unknown_dataset_is_a_command_error(tmp_path: Path):
    with pytest.raises(CommandError, match="unknown dataset"):
        call_command("split_dataset", "weather", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"))


def test_unmigrated_database_is_a_command_error_before_any_training(split: Path, monkeypatch):
    from django.db.migrations.executor import MigrationExecutor

    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: [("catalog.0009_x", False)])
    with pytest.raises(CommandError, match="1 unapplied migrations .*run `python manage.py migrate` first"):
        evaluate(
            "search", "--dataset", "homedepot", "--train-dir", str(split / "train"), "--test-dir", str(split / "test")
        )
