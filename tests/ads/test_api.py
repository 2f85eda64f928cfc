"""Ads API: storefront select and clicks, staff CRUD; bad input is a clear 4xx and never charged."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import F

from ads import budget
from ads.models import CampaignSpend, CtrModelVersion, ServedImpression
from backbone import lifecycle
from backbone.models import TrainingJob
from tests.ads.conftest import AdFactory, AdSlotFactory, CampaignFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid_slot(db):
    return AdSlotFactory(name="search-top", reserve_price=Decimal("0.005"))


def test_storefront_selects_ads_and_clicks_one(storefront_client, paid_slot):
    ad = AdFactory(campaign=CampaignFactory(bid_per_click=Decimal("1.50")))

    selected = storefront_client.post(
        "/api/v1/ads/select", {"slot": "search-top", "context": {"query": "drill"}, "k": 2}, format="json"
    )
    token = selected.json()["ads"][0]["token"]
    clicked = storefront_client.post("/api/v1/ads/clicks", {"token": token}, format="json")

    assert selected.status_code == 200
    body = selected.json()
    assert body["slot"] == "search-top" and body["candidates"] == 1 and body["model"] == "historical_ctr"
    assert body["ads"][0]["ad_id"] == ad.pk
    assert set(body["ads"][0]) >= {"token", "pctr", "bid", "expected_value", "price_per_click", "title"}
    assert clicked.status_code == 201
    assert Decimal(clicked.json()["charged"]) == Decimal("0.5000")  # reserve 0.005 / prior pCTR 0.01
    assert CampaignSpend.objects.get().amount == Decimal("0.5000")


def test_select_needs_a_storefront_key_or_staff(api_client, paid_slot):
    response = api_client.post("/api/v1/ads/select", {"slot": "search-top"}, format="json")

    assert response.status_code in (401, 403)


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"slot": "nowhere"}, "slot", 404),
        ({"slot": "search-top", "k": 0}, "k", 400),
        ({"slot": "search-top", "k": "many"}, "k", 400),
        ({"slot": "search-top", "context": {"product": "NO-SUCH-SKU"}}, "context", 404),
        ({}, "slot", 400),
    ],
)
def test_bad_select_input_is_a_4xx_naming_the_field(storefront_client, paid_slot, body, field, status):
    """Malformed input is a 400; a slot or product that does not exist, a 404."""
    AdFactory()

    response = storefront_client.post("/api/v1/ads/select", body, format="json")

    assert response.status_code == status
    assert field in response.json()
    assert ServedImpression.objects.count() == 0


def test_unknown_token_is_404_and_replayed_click_is_409_charged_once(storefront_client, paid_slot):
    AdFactory()
    token = storefront_client.post("/api/v1/ads/select", {"slot": "search-top"}, format="json").json()["ads"][0][
        "token"
    ]

    unknown = storefront_client.post("/api/v1/ads/clicks", {"token": "forged"}, format="json")
    missing = storefront_client.post("/api/v1/ads/clicks", {}, format="json")
    first = storefront_client.post("/api/v1/ads/clicks", {"token": token}, format="json")
    replay = storefront_client.post("/api/v1/ads/clicks", {"token": token}, format="json")

    assert (unknown.status_code, missing.status_code, first.status_code, replay.status_code) == (404, 400, 201, 409)
    assert "token" in unknown.json() and "token" in replay.json()
    assert CampaignSpend.objects.get().clicks == 1


def test_click_on_an_expired_token_is_409_and_charges_nothing(storefront_client, paid_slot):
    AdFactory()
    token = storefront_client.post("/api/v1/ads/select", {"slot": "search-top"}, format="json").json()["ads"][0][
        "token"
    ]
    window = timedelta(seconds=budget.CLICK_TOKEN_SECONDS)
    ServedImpression.objects.filter(token=token).update(served_at=F("served_at") - window)

    response = storefront_client.post("/api/v1/ads/clicks", {"token": token}, format="json")

    assert response.status_code == 409
    assert "expired" in response.json()["token"][0]
    assert not CampaignSpend.objects.filter(clicks__gt=0).exists()


@pytest.mark.parametrize(
    "change",
    [{"bid_per_click": "-1"}, {"bid_per_click": "0"}, {"daily_budget": "-5"}, {"schedule_hours": [25]}],
)
def test_negative_bids_and_budgets_are_refused(staff_client, change):
    advertiser = staff_client.post("/api/v1/ads/advertisers", {"name": "Acme"}, format="json").json()
    body = {"advertiser": advertiser["id"], "name": "Spring", "daily_budget": "10", "bid_per_click": "0.5", **change}

    response = staff_client.post("/api/v1/ads/campaigns", body, format="json")

    assert response.status_code == 400
    assert set(change) <= set(response.json())


def test_staff_creates_a_campaign_an_ad_and_a_slot(staff_client):
    advertiser = staff_client.post("/api/v1/ads/advertisers", {"name": "Acme"}, format="json").json()
    campaign = staff_client.post(
        "/api/v1/ads/campaigns",
        {
            "advertiser": advertiser["id"],
            "name": "Spring",
            "daily_budget": "10",
            "bid_per_click": "0.5",
            "target_keywords": [" Drill "],
        },
        format="json",
    )
    ad = staff_client.post(
        "/api/v1/ads/creatives", {"campaign": campaign.json()["id"], "title": "Drills on sale"}, format="json"
    )
    slot = staff_client.post("/api/v1/ads/slots", {"name": "home-banner", "reserve_price": "0.01"}, format="json")

    assert (campaign.status_code, ad.status_code, slot.status_code) == (201, 201, 201)
    assert campaign.json()["target_keywords"] == ["drill"]


def test_storefront_cannot_edit_campaigns(storefront_client):
    response = storefront_client.post("/api/v1/ads/advertisers", {"name": "Sneaky"}, format="json")

    assert response.status_code in (401, 403)


def test_admin_campaign_list_shows_impressions_clicks_ctr_and_spend(admin_client, storefront_client, paid_slot):
    AdFactory(campaign=CampaignFactory(name="Spring drills", bid_per_click=Decimal("1.50")))
    tokens = [
        storefront_client.post("/api/v1/ads/select", {"slot": "search-top"}, format="json").json()["ads"][0]["token"]
        for _ in range(4)
    ]
    storefront_client.post("/api/v1/ads/clicks", {"token": tokens[0]}, format="json")

    page = admin_client.get("/admin/ads/campaign/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "Spring drills" in html
    assert '<td class="field-impressions">4</td>' in html and '<td class="field-ctr">25.00%</td>' in html
    assert '<td class="field-spend">0.5000</td>' in html and 'class="field-predicted_ctr">0.99%' in html


def test_staff_starts_the_platform_training_job_for_ads(staff_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post("/api/v1/ads/train", {"max_epochs": 3, "seeds": 1}, format="json")

    assert response.status_code == 202
    job = TrainingJob.objects.get(pk=response.json()["id"])
    assert job.parameters["apps"] == ["ads"] and job.status == TrainingJob.Status.QUEUED
    assert (job.parameters["ads_max_epochs"], job.parameters["ads_seeds"], job.parameters["activate"]) == (3, 1, True)
    assert len(callbacks) == 1  # one message on the training queue, after commit


def test_storefront_cannot_start_training(storefront_client):
    response = storefront_client.post("/api/v1/ads/train", {}, format="json")

    assert response.status_code in (401, 403)


def test_admin_lists_pctr_models_with_the_shared_page(admin_client, tiny_active_version):
    lifecycle.create_queued(CtrModelVersion, prefix="ctr", backbone_version=tiny_active_version)

    page = admin_client.get("/admin/ads/ctrmodelversion/")

    assert page.status_code == 200
    assert "ctr-" in page.content.decode() and "Roll back" in page.content.decode()
