"""The ``recommend_items`` task of the shared multi-task trainer."""

from __future__ import annotations

import random

import pytest
import torch

from backbone import registry
from backbone.services import load_encoder
from recommend.training import RecommendItemsTask, build_task, cooccurring_pairs

pytestmark = pytest.mark.django_db


def test_pairs_come_from_neighbours_in_sequences_and_baskets():
    pairs = cooccurring_pairs([[1, 2, 2, 3]], [[7, 5, 9]], limit=100, seed=1)
    assert sorted(pairs) == [(1, 2), (2, 3), (5, 7), (7, 9)]


def test_task_is_registered_and_built_from_the_events(shop):
    assert registry.TASK_FACTORIES["recommend_items"] is build_task
    task = build_task({"max_examples": 50, "seed": 3})
    assert isinstance(task, RecommendItemsTask) and 0 < len(task.train_pairs) <= 50
    a, b = task.train_pairs[0]
    assert ("Saw" in a) == ("Saw" in b)  # customers and baskets stay within one group


def test_one_training_step_moves_the_encoder_and_lowers_the_loss(shop, tiny_active_version):
    torch.manual_seed(0)
    encoder = load_encoder(tiny_active_version, device="cpu")
    task = build_task({"max_examples": 64})
    head = task.build_head(encoder.dim)
    batch = task.batches(random.Random(0), 16)[0]
    optimizer = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters()), lr=1e-3)
    encoder.train()
    first = task.loss(encoder, head, batch).detach()
    for _ in range(5):
        loss = task.loss(encoder, head, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(first) and float(loss.detach()) < float(first)
    encoder.eval()
    metrics = task.evaluate(encoder, head)
    assert set(metrics) == {"recall@10", "mrr", "n"}
    assert set(task.baselines(encoder)) == {"untuned"}


def test_a_job_that_names_recommend_items_fine_tunes_and_trains_the_recommender_on_the_new_version(
    shop, tiny_active_version, settings, tmp_path
):
    """The recommender reads the embeddings of the version being trained, before that version serves."""
    from backbone import jobs, lifecycle
    from backbone import services as backbone_services
    from backbone.models import ModelVersion, TrainingJob
    from recommend.models import RecommenderModel

    settings.MODELS_DIR = tmp_path / "models"
    job = backbone_services.start_training_job(
        apps=["recommend"],
        tasks=["recommend_items"],
        parameters={"epochs": 1, "batch_size": 8, "max_examples": 32, "bags": 1},
        enqueue=False,
    )
    jobs.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    assert "recommend_items" in job.metrics["tasks"]
    version = lifecycle.active(ModelVersion)
    assert version.pk != tiny_active_version.pk and version.training_job_id == job.pk
    assert (tmp_path / "models" / version.name / "heads" / "recommend_items" / "weights.safetensors").exists()
    recommender = lifecycle.active(RecommenderModel)
    assert recommender.training_job_id == job.pk
    assert recommender.metrics["backbone"] == version.name and recommender.metrics["with_text"]


def test_the_recommend_app_trains_without_a_fine_tune_by_default():
    trainer = registry.APP_TRAINERS["recommend"]
    assert trainer.tasks == () and not trainer.fine_tunes and trainer.fit is not None
