"""``manage.py evaluate ads`` end to end on small cuts of the real datasets, and ``split_dataset movielens_ctr|ipinyou``."""

from __future__ import annotations

import csv
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def evaluate(dataset: str, train_dir: Path, test_dir: Path, *extra: str) -> dict:
    out = StringIO()
    call_command(
        "evaluate",
        "ads",
        "--dataset",
        dataset,
        "--train-dir",
        str(train_dir),
        "--test-dir",
        str(test_dir),
        "--set",
        "max_epochs=2",
        *extra,
        stdout=out,
    )
    return json.loads(out.getvalue())


def cut_movielens(source: Path, target: Path, users: int) -> None:
    """Copy the ratings of the first ``users`` users, all movies and tags."""
    target.mkdir(parents=True)
    with open(source / "ratings.csv", newline="") as fh, open(target / "ratings.csv", "w", newline="") as out:
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(r for r in reader if int(r["userId"]) <= users)
    for name in ("movies.csv", "tags.csv"):
        (target / name).write_text((source / name).read_text())


def test_movielens_ctr_reports_model_ablation_and_baselines(data_dir, tmp_path, tiny_active_version):
    cut_movielens(data_dir / "movielens_latest_small", tmp_path / "small", users=40)
    call_command(
        "split_dataset",
        "movielens_ctr",
        "--data-dir",
        str(tmp_path / "small"),
        "--out",
        str(tmp_path / "dev"),
        stdout=StringIO(),
    )

    report = evaluate("movielens_ctr", tmp_path / "dev" / "train", tmp_path / "dev" / "test")

    assert (report["task"], report["dataset"], report["n"]) == ("ads", "movielens_ctr", 120)
    assert set(report["baselines"]) == {"logistic_hashed", "lightgbm"}
    for metrics in [report["metrics"], report["ablation_without_text"], *report["baselines"].values()]:
        assert 0 <= metrics["auc"] <= 1 and metrics["log_loss"] > 0 and metrics["calibration_ratio"] > 0
    assert report["text_gain_auc"] == pytest.approx(
        report["metrics"]["auc"] - report["ablation_without_text"]["auc"], abs=2e-4
    )
    assert report["backbone_version"] == "tiny"
    assert report["model"].startswith("ads.ml.CtrModel from fit_ctr_model") and "taste profiles" in report["model"]
    assert report["recipe"]["profile_field"] == "customer"


def test_ipinyou_reports_auc_with_a_bootstrap_interval(data_dir, tmp_path):
    source = data_dir / "ipinyou_ctr" / "impressions.csv"
    lines = source.read_text().splitlines(keepends=True)
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "train" / "impressions.csv").write_text("".join(lines[:8001]))
    (tmp_path / "test" / "impressions.csv").write_text(lines[0] + "".join(lines[8001:12001]))

    report = evaluate("ipinyou", tmp_path / "train", tmp_path / "test")

    metrics = report["metrics"]
    assert report["n"] == 4000 and report["test_clicks"] > 0
    assert metrics["auc_ci95_low"] <= metrics["auc"] <= metrics["auc_ci95_high"]
    assert "auc_ci95_low" in report["baselines"]["lightgbm"]


def test_missing_column_is_a_command_error(tmp_path):
    for side in ("train", "test"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "impressions.csv").write_text("row_id,click\n1,0\n")

    with pytest.raises(CommandError, match=r"impressions.csv, line 1: missing columns \['weekday', 'hour'"):
        evaluate("ipinyou", tmp_path / "train", tmp_path / "test")


def test_movielens_split_holds_out_the_latest_ratings_and_their_tags(data_dir, tmp_path):
    out = StringIO()
    call_command(
        "split_dataset",
        "movielens_ctr",
        "--data-dir",
        str(data_dir / "movielens_latest_small"),
        "--out",
        str(tmp_path),
        stdout=out,
    )

    counts = json.loads(out.getvalue())
    with open(tmp_path / "test" / "ratings.csv") as fh:
        held = list(csv.DictReader(fh))
    with open(tmp_path / "train" / "ratings.csv") as fh:
        kept = list(csv.DictReader(fh))
    latest_kept: dict[str, int] = {}
    for r in kept:
        latest_kept[r["userId"]] = max(latest_kept.get(r["userId"], 0), int(r["timestamp"]))

    assert counts["test_ratings"] == len(held) == 3 * 610
    assert all(int(r["timestamp"]) >= latest_kept[r["userId"]] for r in held)
    assert counts["train_ratings"] + counts["test_ratings"] == 100226


def test_a_dev_split_can_be_carved_from_a_split_train_folder(data_dir, tmp_path):
    def split(source: Path, out: Path) -> dict:
        stdout = StringIO()
        call_command(
            "split_dataset",
            "movielens_ctr",
            "--data-dir",
            str(source),
            "--out",
            str(out),
            stdout=stdout,
        )
        return json.loads(stdout.getvalue())

    def ratings(path: Path) -> set[tuple[str, str]]:
        with open(path) as fh:
            return {(r["userId"], r["movieId"]) for r in csv.DictReader(fh)}

    outer = split(data_dir / "movielens_latest_small", tmp_path / "outer")
    inner = split(tmp_path / "outer" / "train", tmp_path / "dev")

    assert inner["train_ratings"] + inner["test_ratings"] == outer["train_ratings"]
    outer_test = ratings(tmp_path / "outer" / "test" / "ratings.csv")
    assert not outer_test & ratings(tmp_path / "dev" / "train" / "ratings.csv")
    assert not outer_test & ratings(tmp_path / "dev" / "test" / "ratings.csv")
