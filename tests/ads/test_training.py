"""pCTR training on served impressions (the Celery task, run twice), activation, serving, and the shared-trainer task."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
import torch

from ads import services, tasks
from ads.models import CtrModelVersion, ServedImpression
from backbone.multitask import MultiTaskTrainer, TrainingConfig
from backbone.services import load_encoder
from tests.ads.conftest import AdFactory, AdSlotFactory, CampaignFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def served_log(db):
    """300 served impressions: the drill ad is clicked on drill queries, the garden ad rarely."""
    torch.set_num_threads(1)
    rng = random.Random(0)
    slot = AdSlotFactory(name="search-top")
    drill = AdFactory(title="Cordless drill", campaign=CampaignFactory())
    garden = AdFactory(title="Garden hose", campaign=CampaignFactory())
    rows, clicks = [], []
    for i in range(300):
        ad = drill if i % 2 else garden
        query = rng.choice(["drill bits", "hose reel"])
        clicks.append(rng.random() < (0.5 if (ad is drill) == (query == "drill bits") else 0.05))
        rows.append(
            ServedImpression(
                ad=ad,
                campaign=ad.campaign,
                slot=slot,
                pctr=0.01,
                bid=Decimal("1"),
                price=Decimal("0.5"),
                features={
                    "slot": slot.name,
                    "ad": str(ad.pk),
                    "campaign": str(ad.campaign_id),
                    "hour": "3",
                    "query_words": query.split(),
                },
                context_text=query,
            )
        )
    ServedImpression.objects.bulk_create(rows)
    clicked = [r.pk for r, click in zip(rows, clicks) if click]
    ServedImpression.objects.filter(pk__in=clicked).update(clicked_at="2026-01-01T00:00Z")
    return slot


def test_training_task_run_twice_trains_once_and_the_model_serves(served_log, tiny_active_version, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    version = services.start_ctr_training(parameters={"max_epochs": 2, "activate": True})

    tasks.train_ctr(version.pk)
    tasks.train_ctr(version.pk)  # a redelivered message finds nothing to do

    version.refresh_from_db()
    assert version.status == CtrModelVersion.Status.ACTIVE, version.error
    assert (tmp_path / "ads" / version.name / "weights.safetensors").exists()
    assert 0 <= version.metrics["validation"]["auc"] <= 1
    services.SCORER.reset()
    result = services.select_ads(slot=served_log.name, query="drill", k=2)
    assert result["model"] == version.name
    assert all(0 < ad["pctr"] < 1 for ad in result["ads"])


def test_training_without_clicks_fails_with_a_message(db, tiny_active_version, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    version = services.start_ctr_training()

    services.train_ctr_model(version_id=version.pk)

    version.refresh_from_db()
    assert version.status == CtrModelVersion.Status.FAILED
    assert "not enough served impressions" in version.error


def test_text_task_fine_tunes_the_shared_backbone(served_log, tiny_active_version):
    task = services.build_text_training_task({})
    encoder = load_encoder(tiny_active_version)

    result = MultiTaskTrainer(encoder, [task], TrainingConfig(epochs=1, batch_size=16)).fit()

    assert result.steps > 0
    assert 0 <= result.metrics["ads_ctr"]["auc"] <= 1
    assert "cosine_untuned" in result.baselines["ads_ctr"]
