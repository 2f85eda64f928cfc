"""pCTR training through the platform's one training job, serving what it trained (the same pCTR
through the evaluation path and the select API), and the shared-trainer task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ads import services, training
from ads.ml import CtrModel
from ads.models import CtrModelVersion, ServedImpression
from backbone import jobs, lifecycle
from backbone.models import TrainingJob
from backbone.multitask import MultiTaskTrainer, TrainingConfig
from backbone.services import load_encoder, version_encoder

pytestmark = pytest.mark.django_db

TINY = {"ads_max_epochs": 2, "ads_seeds": 1, "ads_batch_size": 64}


def test_the_training_job_trains_activates_and_serves_the_pctr_model(served_log, tiny_active_version, models_dir):
    job = training.start_ctr_training(parameters={"activate": True, **TINY})

    jobs.run_training_job(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    row = lifecycle.active(CtrModelVersion)
    assert (row.backbone_version_id, row.training_job_id) == (tiny_active_version.pk, job.pk)
    assert (models_dir / "ads" / row.name / "weights.safetensors").exists()
    assert 0 <= row.metrics["validation"]["auc"] <= 1 and "pctr" in job.log
    result = services.select_ads(slot=served_log.name, query="drill", customer="ann", k=2)
    assert result["model"] == row.name
    assert all(0 < ad["pctr"] < 1 for ad in result["ads"])


def test_the_evaluation_path_and_the_select_api_give_the_same_pctr(
    served_log, tiny_active_version, models_dir, storefront_client
):
    row = training.fit_ctr_version(version=tiny_active_version, parameters=TINY)
    lifecycle.activate(CtrModelVersion, pk=row.pk)
    logged = ServedImpression.objects.count()
    contexts = [{"query": "drill bits", "customer": "ann"}, {"query": "hose", "customer": "bo"}, {"query": "saw"}]

    answers = [
        storefront_client.post("/api/v1/ads/select", {"slot": served_log.name, "context": c, "k": 2}, format="json")
        for c in contexts
    ]

    api = {ad["token"]: ad["pctr"] for answer in answers for ad in answer.json()["ads"]}
    assert {answer.json()["model"] for answer in answers} == {row.name} and len(api) == 6
    # the evaluation path: the platform's adapter reads the impressions select logged; the saved model scores them
    data = training.training_data(version=tiny_active_version, encoder=version_encoder(tiny_active_version))
    new = list(ServedImpression.objects.order_by("served_at", "id")[logged:])
    measured = CtrModel.load(Path(row.path)).predict(data.subset(np.arange(logged, len(data))))
    np.testing.assert_allclose([api[imp.token] for imp in new], measured, atol=2e-6)  # the API rounds to 6 places


def test_fit_without_enough_clicks_fails_its_row_and_raises(db, tiny_active_version, models_dir):
    with pytest.raises(services.NotEnoughImpressions, match="not enough served impressions"):
        training.fit_ctr_version(version=tiny_active_version, parameters={})

    row = CtrModelVersion.objects.get()
    assert row.state == CtrModelVersion.State.FAILED and "not enough served impressions" in row.error


def test_ads_has_data_to_train_only_with_clicked_impressions(served_log):
    assert training.training_summary().startswith("300 served impressions")
    ServedImpression.objects.update(clicked_at=None)

    assert training.training_summary() == ""


def test_rolling_back_serves_the_previous_pctr_model(served_log, tiny_active_version, models_dir):
    first = training.fit_ctr_version(version=tiny_active_version, parameters=TINY)
    lifecycle.activate(CtrModelVersion, pk=first.pk)
    second = training.fit_ctr_version(version=tiny_active_version, parameters=TINY)
    lifecycle.activate(CtrModelVersion, pk=second.pk)
    assert services.select_ads(slot=served_log.name, query="drill")["model"] == second.name

    lifecycle.roll_back(CtrModelVersion)
    services.SCORER.reset()

    assert services.select_ads(slot=served_log.name, query="drill")["model"] == first.name


def test_text_task_fine_tunes_the_shared_backbone(served_log, tiny_active_version):
    task = training.build_text_training_task({})
    encoder = load_encoder(tiny_active_version)

    result = MultiTaskTrainer(encoder, [task], TrainingConfig(epochs=1, batch_size=16, baselines=True)).fit()

    assert result.steps > 0
    assert 0 <= result.metrics["ads_ctr"]["auc"] <= 1
    assert "cosine_untuned" in result.baselines["ads_ctr"]


def test_the_gate_scores_a_pctr_model_by_auc_on_its_validation_split(served_log, tiny_active_version, models_dir):
    """The ads validator gives what the fit measured on the same newest 20% (its own validation)."""
    row = training.fit_ctr_version(version=tiny_active_version, parameters=TINY)
    metric, auc, n = training.validate_ctr_version(version=tiny_active_version, row=row)
    assert (metric, n) == ("auc", 60) and auc == pytest.approx(row.metrics["validation"]["auc"], abs=1e-4)
    assert auc > 0.6  # the clicks follow the query: a model that learned anything beats chance
    assert training.validate_ctr_version(version=tiny_active_version, row=None) is None
