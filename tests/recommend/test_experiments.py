"""A/B tests of recommenders: a stable split by customer, each arm served and logged by its own model,
per-arm online rates with intervals, bad tests refused in the admin, and promotion in one action."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from backbone import experiments, lifecycle
from backbone.models import Experiment
from catalog.models import Event
from monitoring import services as monitoring
from monitoring.experiments import report, wilson
from recommend import services as recommend
from recommend.models import RecommendationLog, RecommenderModel
from tests.recommend.conftest import train_through_a_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_recommenders(trained):
    """The active recommender (control) and a second one trained but not activated (challenger)."""
    train_through_a_job({"activate": False})
    experiments.reset_cache()
    return trained, RecommenderModel.objects.get(state="ready")


def start(admin_client, app: str, challenger: str, share: str = "50"):
    return admin_client.post("/admin/backbone/experiment/add/", {"app": app, "challenger": challenger, "share": share})


def test_the_arm_of_a_customer_is_stable_and_the_share_holds():
    experiment = Experiment.objects.create(app="recommend", challenger="x", control="y", share=30)
    arms = [experiments.arm(experiment, f"customer-{i}") for i in range(10_000)]
    assert arms.count("B") / len(arms) == pytest.approx(0.30, abs=0.02)
    assert [experiments.arm(experiment, f"customer-{i}") for i in range(100)] == arms[:100]
    assert experiments.arm(experiment, "") is None  # no customer: in no arm (the control serves it)


def test_for_you_serves_and_logs_each_customer_from_its_arm(admin_client, storefront_client, two_recommenders):
    control, challenger = two_recommenders
    assert start(admin_client, "recommend", challenger.name).status_code == 302
    experiment = Experiment.objects.get()
    assert experiment.control == control.name
    served = {}
    for c in range(30):
        body = storefront_client.get(f"/api/v1/recommend/customers/c{c}").json()
        log = RecommendationLog.objects.get(rec_id=body["rec_id"])
        served[body["arm"]] = served.get(body["arm"], set()) | {log.model_version}
        assert body["arm"] == experiments.arm(experiment, f"c{c}")
    assert served == {"A": {control.name}, "B": {challenger.name}}
    similar = storefront_client.get("/api/v1/recommend/products/SAW-1/similar").json()  # not split: the control
    assert RecommendationLog.objects.get(rec_id=similar["rec_id"]).model_version == control.name


@pytest.mark.parametrize(
    "app, challenger, share, field",
    [("recommend", "CHALLENGER", "0", "share"), ("recommend", "CHALLENGER", "100", "share"),
     ("recommend", "CHALLENGER", "150", "share"), ("recommend", "no-such-model", "50", "challenger"),
     ("recommend", "CONTROL", "50", "challenger"), ("chatbot", "CHALLENGER", "50", "app")],
)  # fmt: skip
def test_a_bad_test_is_a_form_error_and_nothing_is_saved(admin_client, two_recommenders, app, challenger, share, field):
    control, ready = two_recommenders
    name = {"CHALLENGER": ready.name, "CONTROL": control.name}.get(challenger, challenger)
    response = start(admin_client, app, name, share)
    assert response.status_code == 200 and field in response.context["adminform"].form.errors
    assert not Experiment.objects.exists()


def test_only_one_test_runs_per_app(admin_client, two_recommenders):
    _, challenger = two_recommenders
    assert start(admin_client, "recommend", challenger.name).status_code == 302
    response = start(admin_client, "recommend", challenger.name)
    assert response.status_code == 200 and "running already" in str(response.context["adminform"].form.errors)
    assert Experiment.objects.count() == 1


def test_promoting_the_challenger_serves_it_to_everyone(admin_client, storefront_client, two_recommenders):
    _, challenger = two_recommenders
    start(admin_client, "recommend", challenger.name)
    experiment = Experiment.objects.get()
    response = admin_client.post(
        "/admin/backbone/experiment/", {"action": "promote", "_selected_action": [experiment.pk]}
    )
    assert response.status_code == 302
    experiment.refresh_from_db()
    assert experiment.winner == "B" and experiment.ended_at is not None
    assert lifecycle.active(RecommenderModel).pk == challenger.pk
    recommend.reset_serving_cache()
    body = storefront_client.get("/api/v1/recommend/customers/c3").json()
    assert body["arm"] is None and RecommendationLog.objects.get(rec_id=body["rec_id"]).model_version == challenger.name


def shown(model: str, arm: str, n: int, clicked: int, product) -> None:
    """``n`` for-you answers of one item by ``model`` in ``arm``, ``clicked`` of them clicked (an event echoing the rec_id)."""
    for i in range(n):
        log = RecommendationLog.objects.create(
            kind="for_you", model_version=model, arm=arm, products=[product.pk], sources=["model"]
        )
        if i < clicked:
            Event.objects.create(
                product=product,
                type="click",
                timestamp=timezone.now(),
                client_event_id=f"{model}-{arm}-{i}",
                rec_id=log.rec_id,
            )


def test_the_report_gives_each_arm_its_rate_and_interval(staff_client, two_recommenders):
    control, challenger = two_recommenders
    experiment = Experiment.objects.create(app="recommend", control=control.name, challenger=challenger.name, share=50)
    Experiment.objects.filter(pk=experiment.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    experiment.refresh_from_db()
    product = Event.objects.first().product
    shown(control.name, "A", 200, 20, product)
    shown(challenger.name, "B", 200, 50, product)
    shown(control.name, "", 300, 200, product)  # similar items, or a for-you outside the test: not in the report
    other = Event.objects.exclude(product=product).first().product
    two = RecommendationLog.objects.create(kind="for_you", model_version=challenger.name, arm="B",
                                           products=[product.pk, other.pk], sources=["model", "model"])  # fmt: skip
    for i, item in enumerate((product, other)):  # both items of one answer opened: one answer with a click
        Event.objects.create(product=item, type="click", timestamp=timezone.now(), client_event_id=f"two-{i}",
                             rec_id=two.rec_id)  # fmt: skip
    RecommendationLog.objects.create(
        kind="similar", model_version=control.name, products=[product.pk], sources=["model"]
    )
    monitoring.refresh()
    result = report(experiment)
    a, b = result["arms"]
    assert (a["rate"], a["n"], b["rate"], b["n"]) == (0.1, 200, 51 / 201, 201)
    assert (a["low"], a["high"]) == pytest.approx(wilson(20, 200)) and a["low"] < 0.1 < a["high"]
    assert 0 < result["difference"]["low"] < 0.15 < result["difference"]["high"]
    body = staff_client.get("/api/v1/metrics/experiments").json()
    assert body["results"][0]["report"]["arms"][1]["rate"] == pytest.approx(51 / 201)


def test_the_experiment_page_promotes_in_one_click(admin_client, two_recommenders):
    _, challenger = two_recommenders
    start(admin_client, "recommend", challenger.name)
    experiment = Experiment.objects.get()
    page = f"/admin/backbone/experiment/{experiment.pk}/change/"
    assert "Promote the challenger (B)" in admin_client.get(page).content.decode()
    assert admin_client.post(page, {"_promote": "1"}).status_code == 302
    experiment.refresh_from_db()
    assert experiment.winner == "B" and lifecycle.active(RecommenderModel).pk == challenger.pk
    assert "challenger promoted" in admin_client.get(page).content.decode()


def test_a_test_whose_control_no_longer_serves_splits_nobody_and_cannot_be_promoted(
    admin_client, storefront_client, two_recommenders
):
    _, challenger = two_recommenders
    start(admin_client, "recommend", challenger.name)
    experiment = Experiment.objects.get()
    lifecycle.activate(RecommenderModel, pk=challenger.pk)  # the control retired meanwhile (e.g. a retraining)
    recommend.reset_serving_cache()
    assert storefront_client.get("/api/v1/recommend/customers/c3").json()["arm"] is None
    with pytest.raises(ValidationError, match="no longer serves"):
        experiments.end(experiment, promote=True)
    assert experiments.end(experiment, promote=False).winner == "A"
