"""A/B tests of search rankers: each session ranked, answered and logged by its arm's ranker."""

from __future__ import annotations

import pytest

from backbone import experiments, lifecycle
from backbone.models import Experiment, ModelVersion
from monitoring import services as monitoring
from monitoring.models import MetricValue
from search.models import SearchQueryLog, SearchRanker
from tests.search.test_ranker import fit

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_rankers(judged, tiny_active_version, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    control = fit(tiny_active_version)
    lifecycle.activate(SearchRanker, pk=control.pk)
    challenger = fit(tiny_active_version, search_ranker_rounds=5)
    experiments.reset_cache()
    yield control, challenger
    experiments.reset_cache()


def start(admin_client, challenger: str, share: str = "50"):
    return admin_client.post(
        "/admin/backbone/experiment/add/", {"app": "search", "challenger": challenger, "share": share}
    )


def test_each_session_is_ranked_and_logged_by_its_arms_ranker(admin_client, storefront_client, two_rankers):
    control, challenger = two_rankers
    assert start(admin_client, challenger.name).status_code == 302
    experiment = Experiment.objects.get()
    seen = {}
    for s in range(24):
        body = storefront_client.get("/api/v1/search", {"q": "hammer", "session": f"s{s}"}).json()
        assert body["arm"] == experiments.arm(experiment, f"s{s}") and body["ranker"] == "learned"
        seen.setdefault(body["arm"], set()).add(SearchQueryLog.objects.get(pk=body["search_id"]).ranker_name)
    assert seen == {"A": {control.name}, "B": {challenger.name}}
    assert storefront_client.get("/api/v1/search", {"q": "hammer"}).json()["arm"] is None  # no session: in no arm
    monitoring.refresh()
    per_arm = dict(
        MetricValue.objects.filter(metric="search.queries", granularity="hour").values_list("version", "count")
    )
    assert per_arm[control.name] + per_arm[challenger.name] == per_arm["all"] == 25


def test_a_challenger_of_another_backbone_version_is_refused(admin_client, two_rankers, tiny_active_version):
    control, _ = two_rankers
    other = ModelVersion.objects.create(
        name="tiny-other", path=tiny_active_version.path, state=ModelVersion.State.READY
    )
    stranger = fit(other)
    response = start(admin_client, stranger.name)
    assert response.status_code == 200 and "backbone version that serves" in str(
        response.context["adminform"].form.errors
    )
    assert not Experiment.objects.exists()
