"""Training jobs (``manage.py train``, the admin, the API): plan, fine-tune, embed, fit, switch together."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from backbone import jobs, lifecycle, registry, services
from backbone.models import ModelVersion, TrainingJob
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


QUICK = {"epochs": 6, "batch_size": 16, "lr": 1e-4, "head_lr": 1e-2}


def test_starting_a_job_enqueues_it_on_commit(django_capture_on_commit_callbacks, apps):
    with django_capture_on_commit_callbacks() as callbacks:
        job = services.start_training_job(apps=["colours"], parameters={"epochs": 1})
    assert job.status == TrainingJob.Status.QUEUED
    assert job.parameters == {"apps": ["colours"], "tasks": [], "epochs": 1}
    assert len(callbacks) == 1


def test_unknown_app_or_task_is_refused_and_nothing_is_written(apps):
    with pytest.raises(services.TrainingError, match="unknown"):
        services.start_training_job(apps=["telepathy"])
    with pytest.raises(services.TrainingError, match="unknown"):
        services.start_training_job(tasks=["telepathy"])
    assert TrainingJob.objects.count() == 0


def test_job_fine_tunes_embeds_fits_and_switches_together(tiny_active_version, colour_intents, apps, models_dir):
    ProductFactory.create_batch(3)
    job = services.start_training_job(parameters=QUICK)
    jobs.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    assert "skipping empty: no data to train on" in job.log
    version = job.result_version
    assert version.state == ModelVersion.State.ACTIVE and services.get_active_version().pk == version.pk
    assert ModelVersion.objects.get(pk=tiny_active_version.pk).state == ModelVersion.State.RETIRED
    # the app's fit ran on the new version before it served, with every product already embedded
    assert apps["fitted"] == [(version.pk, ModelVersion.State.ACTIVATING, 3)]
    assert job.metrics["tasks"]["intents"]["accuracy"] > 0.5  # four classes: chance is 0.25
    assert "baselines" not in version.metrics  # a training job trains; evaluate measures baselines
    folder = Path(version.path)
    assert json.loads((folder / "heads/intents/config.json").read_text())["labels"][0] == "paint_blue"
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.bin"))


def test_failed_fit_leaves_the_previous_version_serving(tiny_active_version, colour_intents, apps, models_dir):
    apps["fail"] = True
    job = services.start_training_job(apps=["colours"], parameters={"epochs": 0.2})
    jobs.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.FAILED
    assert "did not converge" in job.error and "did not converge" in job.log
    assert services.get_active_version().pk == tiny_active_version.pk
    new = ModelVersion.objects.get(training_job=job)
    assert new.state == ModelVersion.State.FAILED and "did not converge" in new.error


def test_claimed_job_is_not_trained_twice(tiny_active_version, colour_intents, apps, models_dir):
    job = services.start_training_job(apps=["colours"], parameters={"epochs": 0.2})
    assert jobs.run_training_job(job_id=job.pk) is not None
    assert jobs.run_training_job(job_id=job.pk) is None
    assert ModelVersion.objects.filter(training_job=job).count() == 1


def test_app_without_fine_tune_trains_on_the_active_backbone(monkeypatch, tiny_active_version):
    seen = []
    fit = lambda *, version, **kwargs: seen.append(version.pk)  # noqa: E731
    monkeypatch.setattr(registry, "APP_TRAINERS", {"shelf": registry.AppTrainer("shelf", (), False, lambda: "x", fit)})
    job = services.start_training_job(apps=["shelf"])
    jobs.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    assert seen == [tiny_active_version.pk] and ModelVersion.objects.count() == 1


def test_job_without_data_fails_with_a_message(tiny_active_version, apps, models_dir):
    job = services.start_training_job(apps=["colours"])
    jobs.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.FAILED
    assert "nothing to train" in job.error


def test_train_command_runs_inline_and_serves_the_new_version(
    tiny_active_version, colour_intents, apps, models_dir, capsys
):
    call_command("train", "colours", "--inline", "--set", "epochs=0.5", "--set", "batch_size=16")
    active = services.get_active_version()
    assert active.pk != tiny_active_version.pk and active.tasks == ["intents"]
    assert f"serving backbone {active.name}" in capsys.readouterr().out


def test_train_command_without_data_exits_2(tiny_active_version, apps):
    with pytest.raises(SystemExit) as exit_info:
        call_command("train")
    assert exit_info.value.code == 2
    assert TrainingJob.objects.count() == 0


def test_train_command_reports_a_failed_job(tiny_active_version, colour_intents, apps, models_dir):
    apps["fail"] = True
    with pytest.raises(CommandError, match="did not converge"):
        call_command("train", "--inline", "--set", "epochs=0.2")
    assert services.get_active_version().pk == tiny_active_version.pk


def test_cancel_only_touches_unfinished_jobs():
    queued = TrainingJob.objects.create()
    done = TrainingJob.objects.create(status=TrainingJob.Status.SUCCEEDED)
    assert jobs.cancel_training_job(job_id=queued.pk) is True
    assert jobs.cancel_training_job(job_id=done.pk) is False
    queued.refresh_from_db()
    assert queued.status == TrainingJob.Status.CANCELLED
    assert jobs.run_training_job(job_id=queued.pk) is None  # a cancelled job is never claimed


def test_stale_running_job_is_marked_failed(settings):
    settings.TRAINING_HEARTBEAT_TIMEOUT = 60
    stale = TrainingJob.objects.create(
        status=TrainingJob.Status.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    alive = TrainingJob.objects.create(status=TrainingJob.Status.RUNNING, heartbeat_at=timezone.now())
    assert jobs.reap_stale_jobs() == 1
    assert jobs.reap_stale_jobs() == 0  # run it twice: nothing left to reap
    stale.refresh_from_db()
    alive.refresh_from_db()
    assert stale.status == TrainingJob.Status.FAILED and "heartbeat" in stale.error
    assert alive.status == TrainingJob.Status.RUNNING


def test_next_claim_reaps_a_dead_workers_job_with_its_activating_version():
    gone = subprocess.Popen(["true"])
    gone.wait()  # a worker process on this host that no longer exists
    dead = TrainingJob.objects.create(
        status=TrainingJob.Status.RUNNING, heartbeat_at=timezone.now(), worker=f"{socket.gethostname()}:{gone.pid}"
    )
    half = ModelVersion.objects.create(name="half", state=ModelVersion.State.ACTIVATING, training_job=dead)
    served = ModelVersion.objects.create(name="served", state=ModelVersion.State.ACTIVE, training_job=dead)
    job = TrainingJob.objects.create()
    assert jobs.claim_training_job(job_id=job.pk) is True
    dead.refresh_from_db()
    assert dead.status == TrainingJob.Status.FAILED and "gone" in dead.error
    assert ModelVersion.objects.get(pk=half.pk).state == ModelVersion.State.FAILED  # not a second activation
    assert ModelVersion.objects.get(pk=served.pk).state == ModelVersion.State.ACTIVE
    assert TrainingJob.objects.get(pk=job.pk).status == TrainingJob.Status.RUNNING


@pytest.mark.django_db(transaction=True)
def test_job_waits_while_another_runs_and_starts_once_it_has_finished():
    first = TrainingJob.objects.create(status=TrainingJob.Status.RUNNING, heartbeat_at=timezone.now(), worker="w2:1")
    second = TrainingJob.objects.create()
    claimed = []

    def claim() -> None:  # another worker: its own database connection
        claimed.append(jobs.claim_training_job(job_id=second.pk, poll=0.1))
        connection.close()

    thread = threading.Thread(target=claim)
    thread.start()
    try:
        time.sleep(1.0)
        second.refresh_from_db()
        assert not claimed and second.status == TrainingJob.Status.QUEUED
        assert f"waiting for training job #{first.pk}" in second.log
    finally:
        TrainingJob.objects.filter(pk=first.pk).update(status=TrainingJob.Status.SUCCEEDED)
        thread.join(timeout=10)
    assert claimed == [True]
    assert TrainingJob.objects.get(pk=second.pk).status == TrainingJob.Status.RUNNING


def test_roll_back_serves_the_previous_version_and_refuses_without_one(tiny_active_version, tiny_model_dir):
    with pytest.raises(lifecycle.LifecycleError, match="no earlier"):
        services.roll_back_version()
    new = ModelVersion.objects.create(name="new", path=str(tiny_model_dir), state=ModelVersion.State.READY)
    services.switch_active_version(version_id=new.pk)
    assert lifecycle.previous(ModelVersion).pk == tiny_active_version.pk
    services.roll_back_version()
    services.embed_version(version_id=tiny_active_version.pk)  # what the worker runs next: nothing to embed
    assert services.get_active_version().pk == tiny_active_version.pk
    assert ModelVersion.objects.get(pk=new.pk).state == ModelVersion.State.RETIRED


def test_failed_or_queued_rows_cannot_be_activated(tiny_model_dir):
    failed = ModelVersion.objects.create(name="broken", path=str(tiny_model_dir), state=ModelVersion.State.FAILED)
    with pytest.raises(lifecycle.LifecycleError, match="failed"):
        lifecycle.activate(ModelVersion, pk=failed.pk)
    with pytest.raises(lifecycle.LifecycleError, match="failed"):
        services.activate_version(version_id=failed.pk)
