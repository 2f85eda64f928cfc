"""Scheduled retraining: schedules in django-celery-beat's database, and the validation gate of a run."""

from __future__ import annotations

import json

import pytest
from django.core import mail
from django_celery_beat.models import PeriodicTask

from backbone import jobs, registry, services
from backbone.models import ModelVersion, RetrainingSchedule, TrainingJob
from chatbot import services as chat
from chatbot.models import IntentExample
from monitoring.models import Alert
from tests.backbone.test_jobs import QUICK

pytestmark = pytest.mark.django_db
FORM = {"app": "chatbot", "cron": "30 2 * * 1", "enabled": "on", "tolerance": "0.0"}


@pytest.mark.parametrize(
    "fields, field",
    [({"cron": "30 2 * *"}, "cron"), ({"cron": "61 2 * * *"}, "cron"), ({"cron": "every night"}, "cron"),
     ({"app": "telepathy"}, "app"), ({"tolerance": "-0.1"}, "tolerance")],
)  # fmt: skip
def test_a_bad_schedule_is_a_form_error_and_nothing_is_saved(admin_client, fields, field):
    response = admin_client.post("/admin/backbone/retrainingschedule/add/", {**FORM, **fields})
    assert response.status_code == 200 and field in response.context["adminform"].form.errors
    assert (
        not RetrainingSchedule.objects.exists() and not PeriodicTask.objects.filter(name__startswith="retrain").exists()
    )


def test_a_schedule_is_a_periodic_task_that_follows_its_edits(admin_client):
    assert admin_client.post("/admin/backbone/retrainingschedule/add/", FORM).status_code == 302
    schedule = RetrainingSchedule.objects.get()
    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    assert (task.task, json.loads(task.args), task.enabled) == ("backbone.scheduled_training", ["chatbot"], True)
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "2", "1")

    edit = {**FORM, "cron": "0 4 * * *", "enabled": ""}
    assert admin_client.post(f"/admin/backbone/retrainingschedule/{schedule.pk}/change/", edit).status_code == 302
    task.refresh_from_db()
    assert (task.crontab.hour, task.enabled) == ("4", False)
    schedule.refresh_from_db()
    schedule.delete()
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


def test_a_scheduled_run_starts_a_gated_job_only_when_enabled_and_with_data(apps, colour_intents):
    assert services.start_scheduled_training(app="colours") is None  # no schedule
    RetrainingSchedule.objects.create(app="colours", cron="0 3 * * *", tolerance=0.01)
    job = TrainingJob.objects.get(pk=services.start_scheduled_training(app="colours"))
    assert job.parameters == {"gate": True, "tolerance": 0.01, "apps": ["colours"], "tasks": []}
    RetrainingSchedule.objects.create(app="empty", cron="0 3 * * *")
    assert services.start_scheduled_training(app="empty") is None  # nothing to train on


def add_validation_examples():
    for example in IntentExample.objects.filter(text__startswith="paint"):  # 20: four colours, five words
        IntentExample.objects.create(intent=example.intent, text=example.text + " thanks", split="val")


def gated(monkeypatch, serving_pk: int, *, serving: float, new: float) -> None:
    """The ``colours`` app judged by a validator that gives the serving version ``serving``, a new one ``new``."""
    trainer = registry.APP_TRAINERS["colours"]

    def validate(*, version, row):
        return "accuracy", serving if version.pk == serving_pk else new, 100

    monkeypatch.setitem(registry.APP_TRAINERS, "colours", registry.AppTrainer(
        "colours", trainer.tasks, True, trainer.data, trainer.fit, validate=validate))  # fmt: skip


def test_the_gate_activates_a_fine_tune_that_validates_at_least_as_well(
    tiny_active_version, colour_intents, apps, models_dir, monkeypatch
):
    gated(monkeypatch, tiny_active_version.pk, serving=0.5, new=0.5)
    job = services.start_training_job(apps=["colours"], parameters={**QUICK, "gate": True})
    jobs.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.metrics["gate"]["promoted"] is True, job.log
    assert job.metrics["gate"]["scores"]["colours"] == {"metric": "accuracy", "new": 0.5, "serving": 0.5, "n": 100}
    assert "at least as good" in job.log and job.result_version.state == ModelVersion.State.ACTIVE
    assert not Alert.objects.exists()


def test_the_gate_keeps_what_serves_when_the_new_version_validates_worse(
    tiny_active_version, colour_intents, apps, models_dir, monkeypatch, settings
):
    settings.ALERT_EMAILS = "ops@example.com"
    gated(monkeypatch, tiny_active_version.pk, serving=0.9, new=0.5)
    job = services.start_training_job(apps=["colours"], parameters={**QUICK, "gate": True})
    jobs.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.metrics["gate"]["promoted"] is False
    assert "worse: keeping the serving model" in job.log and "kept what serves" in job.log
    assert services.get_active_version().pk == tiny_active_version.pk
    assert job.result_version.state == ModelVersion.State.READY  # an operator may still activate it
    alert = Alert.objects.get(state="firing")
    assert f"training job {job.pk}" in alert.title and "0.5000 new vs 0.9000 serving" in alert.message
    assert mail.outbox and mail.outbox[0].to == ["ops@example.com"]


def test_the_chat_validator_scores_what_chat_answers_on_the_validation_examples(tiny_active_version, colour_intents):
    chat.reset_caches()
    chat.refresh_prototypes(version=tiny_active_version)
    assert chat.validate_version(version=tiny_active_version) is None  # no val examples yet
    add_validation_examples()
    metric, value, n = chat.validate_version(version=tiny_active_version)
    texts = list(IntentExample.objects.filter(split="val").order_by("id").values_list("text", "intent__name"))
    answered = [chat.answer_message(text=text, session="gate-check") for text, _ in texts]
    expected = sum(reply.intent == name for reply, (_, name) in zip(answered, texts, strict=True)) / len(texts)
    assert (metric, n) == ("accuracy", 20) and value == pytest.approx(expected)
