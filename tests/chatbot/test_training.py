"""The intent task built from stored data, the retrain service, the split command and the evaluator."""

from __future__ import annotations

import csv
import json
from io import StringIO

import pytest
from django.core.management import call_command

from chatbot import services
from chatbot.models import Intent, IntentExample

pytestmark = pytest.mark.django_db


def store(dataset: str, rows: list[tuple[str, str, str]], oos: str = "oos") -> None:
    for label, text, split in rows:
        intent, _ = Intent.objects.get_or_create(
            name=label, defaults={"dataset": dataset, "is_out_of_scope": label == oos}
        )
        IntentExample.objects.create(intent=intent, text=text, split=split)


def test_intent_task_trains_the_out_of_scope_class_when_the_dataset_has_one():
    rows = [
        (label, f"{label} text {i}", split)
        for label in ("a", "b", "oos")
        for i, split in enumerate(["train"] * 4 + ["val"])
    ]
    store("clinc150", rows)
    store("banking77", [("c", "other dataset", "train")])

    task = services.build_intent_task({"intent_dataset": "clinc150"})

    assert task.labels == ["a", "b", "oos"] and task.oos_label == "oos"
    assert len(task.train_texts) == 12 and len(task.val_texts) == 3


def test_retraining_queues_a_training_job_for_the_intents(django_capture_on_commit_callbacks):
    store("banking77", [("a", "x", "train")])
    with django_capture_on_commit_callbacks() as callbacks:
        job = services.start_intent_training(dataset="banking77")
    assert job.parameters["tasks"] == ["intents"] and job.parameters["intent_dataset"] == "banking77"
    assert job.parameters["activate"] is True and len(callbacks) == 1


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def test_split_command_carves_a_stratified_test_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_csv(src / "train.csv", ["text", "category"], [(f"t{i}", f"c{i % 4}") for i in range(40)])
    out = StringIO()
    call_command(
        "split_intents", "--dataset", "banking77", "--data-dir", str(src), "--out", str(tmp_path / "o"), stdout=out
    )

    assert json.loads(out.getvalue())["test"] == 8
    with open(tmp_path / "o" / "test" / "test.csv") as fh:
        labels = [row["category"] for row in csv.DictReader(fh)]
    assert sorted(labels) == sorted(["c0", "c1", "c2", "c3"] * 2)


def test_evaluate_intents_reports_model_and_baselines_on_clinc_layout(tmp_path, tiny_model_dir, settings):
    settings.BACKBONE_BASE_MODEL = str(tiny_model_dir)
    header = ["text", "intent", "domain", "source_split"]
    words = {"balance": "money account", "weather": "rain sun", "oos": "zebra piano"}
    for name, n in (("train", 8), ("val", 3), ("test", 3)):
        (tmp_path / name).mkdir()
        rows = [(f"{w} {label} {i}", label, "d", name) for label, w in words.items() for i in range(n)]
        write_csv(tmp_path / name / f"{name}.csv", header, rows)
    (tmp_path / "val" / "val.csv").rename(tmp_path / "train" / "val.csv")
    out = StringIO()
    call_command(
        "evaluate",
        "intents",
        "--dataset",
        "clinc150",
        "--train-dir",
        str(tmp_path / "train"),
        "--test-dir",
        str(tmp_path / "test"),
        "--set",
        "epochs=1",
        "--set",
        "new_intents=1",
        "--set",
        "new_intent_examples=3",
        "--set",
        "plain_epochs=1",
        stdout=out,
    )
    report = json.loads(out.getvalue())

    assert report["n"] == 9
    assert {"accuracy", "macro_f1", "ece", "in_scope_accuracy", "oos_recall", "oos_precision"} <= set(report["metrics"])
    assert set(report["baselines"]) == {"tfidf_logreg", "frozen_encoder_logreg", "plain_fine_tune"}
    assert report["served_encoder"] == "int8"
    assert report["components"]["float_encoder"]["n"] == 9 and "oos_recall" in report["components"]["float_encoder"]
    plain = report["baselines"]["plain_fine_tune"]
    assert plain["steps"] >= 1 and 0.0 <= plain["accuracy"] <= 1.0 and "oos_recall" in plain
    assert report["training"]["steps"] >= 1
    assert report["new_intent_without_retraining"]["examples_each"] == 3
