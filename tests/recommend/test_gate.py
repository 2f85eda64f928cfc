"""The recommender in a scheduled retraining's gate: judged on events neither model trained on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from backbone import lifecycle
from backbone.metrics import binary_ndcg_at_k
from backbone.models import TrainingJob
from catalog.models import Event
from recommend import services, training
from recommend.models import RecommendationLog, RecommenderModel
from tests.factories import EventFactory
from tests.recommend.conftest import T0, train_through_a_job


@pytest.fixture
def newer_events(trained, shop, monkeypatch):
    """Every customer a validation customer (a 30-customer shop has one or two at 5%), each with one
    purchase after the serving model's newest trained event; returns those events."""
    monkeypatch.setattr(training, "VALIDATION_SHARE", 1.0)
    monkeypatch.setattr(training, "MIN_VALIDATION", 5)
    events = []
    for c, customer in enumerate(shop["customers"]):
        group = shop["saws"] if c % 2 == 0 else shop["seeds"]
        bought = set(Event.objects.filter(customer=customer).values_list("product_id", flat=True))
        product = next(p for p in reversed(group) if p.pk not in bought)
        events.append(EventFactory(customer=customer, product=product, type=Event.Type.PURCHASE,
                                   timestamp=T0 + timedelta(days=60 + c)))  # fmt: skip
    return events


def test_without_a_serving_model_nothing_is_held_out(shop, monkeypatch):
    monkeypatch.setattr(training, "VALIDATION_SHARE", 1.0)
    assert training.held_out_events() == {}


def test_the_newest_events_are_held_out_and_only_events_after_the_serving_models(trained, newer_events):
    held = training.held_out_events()
    assert {event for event, _ in held.values()} == {e.pk for e in newer_events}
    assert trained.metrics["newest_event"] < min(e.timestamp for e in newer_events).isoformat()


def test_a_gated_run_trains_without_them_and_is_judged_as_the_api_answers(storefront_client, trained, newer_events):
    total = Event.objects.count()
    job = train_through_a_job({"gate": True})
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    new = RecommenderModel.objects.get(training_job=job)
    assert (new.n_events, new.metrics["held_out_events"]) == (total - len(newer_events), len(newer_events))
    score = job.metrics["gate"]["scores"]["recommend"]
    assert score["metric"] == "ndcg@10" and score["n"] == len(newer_events)
    assert any(line.startswith("recommend: ndcg@10") for line in job.metrics["gate"]["lines"])
    assert (lifecycle.active(RecommenderModel) == new) == job.metrics["gate"]["promoted"]

    if not job.metrics["gate"]["promoted"]:  # what the API answers with it, without the held-out events
        lifecycle.activate(RecommenderModel, pk=new.pk)
    services.reset_serving_cache()
    targets = {e.customer.external_id: e.product.sku for e in newer_events}
    Event.objects.filter(pk__in=[e.pk for e in newer_events]).delete()
    ndcgs = []
    for customer, sku in targets.items():
        body = storefront_client.get(reverse("recommend-customer", args=[customer]), {"k": 10}).json()
        assert (
            body["fallback"] is None and RecommendationLog.objects.get(rec_id=body["rec_id"]).model_version == new.name
        )
        ndcgs.append(binary_ndcg_at_k([item["sku"] for item in body["items"]], {sku}, 10))
    assert score["new"] == pytest.approx(sum(ndcgs) / len(ndcgs), abs=1e-4)
