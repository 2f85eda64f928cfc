"""The intent task built from stored data, the retrain service, ``split_dataset banking77|clinc150`` and the evaluator."""

from __future__ import annotations

import csv
import json
from io import StringIO

import numpy as np
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


def test_chatbot_tells_train_what_it_trains_on():
    from backbone.registry import APP_TRAINERS

    trainer = APP_TRAINERS["chatbot"]
    assert (trainer.app, trainer.tasks, trainer.fine_tunes) == ("chatbot", ("intents",), True)
    assert trainer.data() == ""
    store("", [("opening_hours", "when are you open", "train")])
    assert trainer.data() == ""  # one intent is served by its prototype; a head over it would answer it always
    store("banking77", [("card_arrival", "where is my card", "train"), ("pin", "my pin", "train")])
    assert trainer.data() == "taught: 1 intents, 1 examples; banking77: 2 intents, 2 examples"


def test_admin_retrain_queues_the_chatbot_training_job_with_the_recipe(
    client, staff_user, django_capture_on_commit_callbacks
):
    from django.urls import reverse

    from backbone.models import TrainingJob
    from chatbot.ml import RECIPE

    store("banking77", [("a", "x", "train"), ("b", "y", "train")])
    client.force_login(staff_user)
    selected = list(Intent.objects.values_list("pk", flat=True))
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("admin:chatbot_intent_changelist"), {"action": "retrain", "_selected_action": selected}
        )

    assert response.status_code == 302
    job = TrainingJob.objects.get()
    assert job.parameters["apps"] == ["chatbot"] and job.parameters["intent_dataset"] == "banking77"
    assert {k: job.parameters[k] for k in RECIPE} == RECIPE and job.created_by == staff_user
    assert len(callbacks) == 1


def test_fit_serves_taught_intents_on_the_new_version_with_that_versions_encoder(tiny_active_version):
    from backbone.encoder import packaged_model_path
    from backbone.models import ModelVersion
    from backbone.services import version_encoder
    from chatbot.ml import class_prototypes
    from chatbot.models import IntentPrototype
    from tests.chatbot.conftest import OPENING_HOURS

    services.teach_intent(name="opening_hours", examples=OPENING_HOURS)
    new = ModelVersion.objects.create(name="next", path=str(packaged_model_path()), state="activating")
    steps = []

    def progress(fraction, message):
        steps.append(fraction)

    args = {"version": new, "parameters": {}, "job_id": None, "progress": progress}
    assert services.fit_for_version(**args) is None  # the head lives in the version itself
    services.fit_for_version(**args)  # twice: nothing more to write

    on_new = IntentPrototype.objects.get(version=new)
    texts = list(on_new.intent.examples.order_by("-id").values_list("text", flat=True))
    expected = class_prototypes(version_encoder(new).encode(texts), [0] * len(texts), 1)[0]
    assert np.allclose(on_new.embedding, expected, atol=1e-5) and on_new.threshold > 0
    on_active = IntentPrototype.objects.get(version=tiny_active_version)
    assert not np.allclose(on_active.embedding, on_new.embedding, atol=1e-2)
    assert IntentPrototype.objects.count() == 2 and steps[0] == 0.0 and steps[-1] == 1.0


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
    call_command("split_dataset", "banking77", "--data-dir", str(src), "--out", str(tmp_path / "o"), stdout=out)

    assert json.loads(out.getvalue())["test"] == 8
    with open(tmp_path / "o" / "test" / "test.csv") as fh:
        labels = [row["category"] for row in csv.DictReader(fh)]
    assert sorted(labels) == sorted(["c0", "c1", "c2", "c3"] * 2)


def test_split_command_keeps_clinc_columns_and_copies_the_validation_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    header = ["text", "intent", "domain", "source_split"]
    write_csv(src / "train.csv", header, [(f"t{i}", f"i{i % 5}", "d", "train") for i in range(50)])
    write_csv(src / "val.csv", header, [("v", "i0", "d", "val")])
    out = StringIO()
    target = str(tmp_path / "o")
    call_command(
        "split_dataset", "clinc150", "--data-dir", str(src), "--out", target, "--test-fraction", "0.4", stdout=out
    )

    assert json.loads(out.getvalue()) == {"dataset": "clinc150", "out": target, "train": 30, "test": 20}
    with open(tmp_path / "o" / "test" / "test.csv") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == header
        assert sorted(row["intent"] for row in reader) == sorted([f"i{i}" for i in range(5)] * 4)
    assert (tmp_path / "o" / "train" / "val.csv").read_bytes() == (src / "val.csv").read_bytes()


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
    assert report["served_encoder"] == "onnx"
    assert set(report["components"]) == {"fine_tuned_without_lexical", "lexical_alone"}
    plain = report["baselines"]["plain_fine_tune"]
    assert plain["steps"] >= 1 and 0.0 <= plain["accuracy"] <= 1.0 and "oos_recall" in plain
    assert report["training"]["steps"] >= 1
    assert report["new_intent_without_retraining"]["examples_each"] == 3
