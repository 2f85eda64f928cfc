"""Training jobs, model versions and activation, through the services (real database)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from backbone import services
from backbone.models import ModelVersion, TrainingJob
from catalog.models import ProductEmbedding
from chatbot.models import Intent, IntentExample
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def colour_intents(db):
    """Forty examples each of four intents that a tiny model can learn."""
    for colour in ["red", "green", "blue", "yellow"]:
        intent = Intent.objects.create(name=f"paint_{colour}", dataset="synthetic")
        IntentExample.objects.bulk_create(
            IntentExample(intent=intent, text=f"{noun} in {colour} {adj}")
            for noun in ["paint", "a wall", "the door", "my shed", "chairs", "a fence", "tiles", "the roof"]
            for adj in ["please", "now", "matte", "gloss", "today"]
        )


@pytest.fixture
def models_dir(tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR


def test_fresh_install_serves_the_packaged_base_version():
    version = services.get_active_version()
    assert version.name == services.BASE_VERSION_NAME
    assert version.state == ModelVersion.State.ACTIVE
    assert services.ensure_base_version().pk == version.pk  # idempotent


def test_int8_copy_is_made_once_per_loaded_encoder(tiny_active_version):
    version, encoder = services.active_encoder()
    same_version, int8 = services.active_int8_encoder()
    assert same_version == version and int8 is not encoder
    assert services.active_int8_encoder()[1] is int8, "cached, not quantised per request"
    assert (int8.encode(["red paint"]) @ encoder.encode(["red paint"]).T).item() > 0.9

    services._ENCODER_CACHE.update(version_id=None, encoder=None, checked_at=0.0)
    services._LOADED.clear()  # the version's weights reloaded (e.g. a new path): a fresh copy
    assert services.active_int8_encoder()[1] is not int8


def test_starting_a_job_enqueues_it_on_commit(django_capture_on_commit_callbacks, colour_intents):
    with django_capture_on_commit_callbacks() as callbacks:
        job = services.start_training_job(tasks=["intents"], parameters={"epochs": 1})
    assert job.status == TrainingJob.Status.QUEUED
    assert job.parameters == {"tasks": ["intents"], "epochs": 1}
    assert len(callbacks) == 1


def test_unknown_task_is_refused_and_nothing_is_written():
    with pytest.raises(services.TrainingError, match="unknown"):
        services.start_training_job(tasks=["telepathy"])
    assert TrainingJob.objects.count() == 0


def test_training_job_writes_a_new_version_that_beats_chance(tiny_active_version, colour_intents, models_dir):
    job = TrainingJob.objects.create(
        parameters={"tasks": ["intents"], "epochs": 6, "batch_size": 16, "lr": 1e-4, "head_lr": 1e-2}
    )
    services.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    assert job.progress == 1.0 and "wrote version" in job.log
    metrics = job.metrics["tasks"]["intents"]
    assert metrics["accuracy"] > 0.5  # four classes: chance is 0.25
    assert "frozen_encoder_logreg" in job.metrics["baselines"]["intents"]
    version = job.result_version
    folder = Path(version.path)
    assert version.state == ModelVersion.State.READY and version.base_id == tiny_active_version.pk
    assert (folder / "model.safetensors").exists() and (folder / "heads/intents/weights.safetensors").exists()
    assert json.loads((folder / "heads/intents/config.json").read_text())["labels"][0] == "paint_blue"
    assert json.loads((folder / "metrics.json").read_text())["tasks"]["intents"] == metrics
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.bin"))


def test_claimed_job_is_not_trained_twice(tiny_active_version, colour_intents, models_dir):
    job = TrainingJob.objects.create(parameters={"tasks": ["intents"], "epochs": 0.2})
    assert services.run_training_job(job_id=job.pk) is not None
    assert services.run_training_job(job_id=job.pk) is None
    assert ModelVersion.objects.exclude(pk=tiny_active_version.pk).count() == 1


def test_job_without_data_fails_with_a_message(tiny_active_version, models_dir):
    job = TrainingJob.objects.create(parameters={"tasks": ["intents"]})
    services.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.FAILED
    assert "import_dataset" in job.error


def test_cancel_only_touches_unfinished_jobs():
    queued = TrainingJob.objects.create()
    done = TrainingJob.objects.create(status=TrainingJob.Status.SUCCEEDED)
    assert services.cancel_training_job(job_id=queued.pk) is True
    assert services.cancel_training_job(job_id=done.pk) is False
    queued.refresh_from_db()
    assert queued.status == TrainingJob.Status.CANCELLED
    assert services.run_training_job(job_id=queued.pk) is None  # a cancelled job is never claimed


def test_stale_running_job_is_marked_failed(settings):
    settings.TRAINING_HEARTBEAT_TIMEOUT = 60
    stale = TrainingJob.objects.create(
        status=TrainingJob.Status.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    alive = TrainingJob.objects.create(status=TrainingJob.Status.RUNNING, heartbeat_at=timezone.now())
    assert services.reap_stale_jobs() == 1
    stale.refresh_from_db()
    alive.refresh_from_db()
    assert stale.status == TrainingJob.Status.FAILED and "heartbeat" in stale.error
    assert alive.status == TrainingJob.Status.RUNNING


def test_activation_switches_only_when_every_product_is_embedded(tiny_active_version, tiny_model_dir):
    products = ProductFactory.create_batch(5)
    services.embed_version(version_id=tiny_active_version.pk)
    assert ProductEmbedding.objects.filter(version=tiny_active_version).count() == 5
    new = ModelVersion.objects.create(name="new", path=str(tiny_model_dir))
    services.activate_version(version_id=new.pk)
    new.refresh_from_db()
    assert new.state == ModelVersion.State.ACTIVATING
    assert services.get_active_version().pk == tiny_active_version.pk  # old one serves meanwhile

    # Fill part of the index, as if the worker were half-way: still not switched.
    from catalog.embeddings import product_index

    encoder = services.load_encoder(new)
    ids = [p.pk for p in products[:2]]
    product_index.store(new.pk, dict(zip(ids, encoder.encode([p.text for p in products[:2]]))))
    assert services.get_active_version().pk == tiny_active_version.pk

    services.embed_version(version_id=new.pk)
    new.refresh_from_db()
    assert new.state == ModelVersion.State.ACTIVE and new.activation_progress == 1.0
    assert ProductEmbedding.objects.filter(version=new).count() == 5
    assert ModelVersion.objects.get(pk=tiny_active_version.pk).state == ModelVersion.State.RETIRED
    services.embed_version(version_id=new.pk)  # run it twice: nothing doubles
    assert ProductEmbedding.objects.filter(version=new).count() == 5


def test_new_product_is_embedded_with_the_active_version(tiny_active_version):
    from catalog.services import embed_products

    product = ProductFactory(title="Cordless drill")
    assert embed_products(product_ids=[product.pk]) == 1
    assert embed_products(product_ids=[product.pk]) == 1  # upsert, not a second row
    assert ProductEmbedding.objects.filter(product=product, version=tiny_active_version).count() == 1


def test_job_asked_to_activate_starts_activation_of_its_version(
    tiny_active_version, colour_intents, models_dir, django_capture_on_commit_callbacks
):
    job = TrainingJob.objects.create(parameters={"tasks": ["intents"], "epochs": 0.2, "activate": True})
    with django_capture_on_commit_callbacks() as callbacks:
        services.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    assert job.result_version.state == ModelVersion.State.ACTIVATING
    assert len(callbacks) == 1  # the re-embedding task; the switch happens when it completes
    assert services.get_active_version().pk == tiny_active_version.pk


def test_product_written_during_an_activation_gets_both_versions(tiny_active_version, tiny_model_dir):
    from catalog.services import embed_products

    new = ModelVersion.objects.create(name="next", path=str(tiny_model_dir), state=ModelVersion.State.ACTIVATING)
    product = ProductFactory(title="Brand-new hammer")
    embed_products(product_ids=[product.pk])
    assert set(ProductEmbedding.objects.filter(product=product).values_list("version_id", flat=True)) == {
        tiny_active_version.pk,
        new.pk,
    }
