"""A/B tests of pCTR models: each customer's ads scored, and logged, by the model of its arm."""

from __future__ import annotations

import pytest

from ads import services, training
from ads.models import CtrModelVersion, ServedImpression
from backbone import experiments, lifecycle
from backbone.models import Experiment
from tests.ads.test_training import TINY

pytestmark = pytest.mark.django_db


def test_ads_select_scores_each_customer_with_its_arms_model(
    admin_client, storefront_client, served_log, tiny_active_version, settings, tmp_path
):
    settings.MODELS_DIR = tmp_path
    control = training.fit_ctr_version(version=tiny_active_version, parameters=TINY)
    lifecycle.activate(CtrModelVersion, pk=control.pk)
    challenger = training.fit_ctr_version(version=tiny_active_version, parameters=TINY)
    services.SCORER.reset()
    form = {"app": "ads", "challenger": challenger.name, "share": "40"}
    assert admin_client.post("/admin/backbone/experiment/add/", form).status_code == 302
    experiment = Experiment.objects.get()
    seen = {}
    for c in range(20):
        body = storefront_client.post(
            "/api/v1/ads/select", {"slot": served_log.name, "context": {"customer": f"shopper-{c}"}}, format="json"
        ).json()
        assert body["arm"] == experiments.arm(experiment, f"shopper-{c}")
        token = body["ads"][0]["token"]
        seen[body["arm"]] = {body["model"], ServedImpression.objects.get(token=token).model_name}
    assert seen == {"A": {control.name}, "B": {challenger.name}}
