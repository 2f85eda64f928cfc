"""Factories and fixtures of the ads tests."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import factory
import pytest
import torch
from django.utils import timezone

from ads import services
from ads.models import Ad, AdSlot, Advertiser, Campaign, ServedImpression


class AdvertiserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Advertiser

    name = factory.Sequence(lambda n: f"Advertiser {n}")


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    advertiser = factory.SubFactory(AdvertiserFactory)
    name = factory.Sequence(lambda n: f"Campaign {n}")
    daily_budget = Decimal("100")
    bid_per_click = Decimal("1.00")


class AdFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Ad

    campaign = factory.SubFactory(CampaignFactory)
    title = factory.Sequence(lambda n: f"Great cordless drill {n}")
    text = "Save 20% this week"


class AdSlotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AdSlot

    name = factory.Sequence(lambda n: f"slot-{n}")
    reserve_price = Decimal("0")
    max_ads = 3


@pytest.fixture
def slot(db) -> AdSlot:
    return AdSlotFactory(name="search-top")


@pytest.fixture(autouse=True)
def fresh_serving_catalogue(monkeypatch):
    """Serving re-reads ads and campaigns on every request in tests (production keeps them a few seconds)."""
    monkeypatch.setattr(services, "CATALOGUE_SECONDS", 0.0)
    services.reset_caches()
    yield
    services.reset_caches()


@pytest.fixture
def models_dir(tmp_path, settings) -> Path:
    """Model folders of the test go to a temporary folder."""
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR


@pytest.fixture
def served_log(db):
    """300 impressions logged as serving logs them: the drill ad is clicked on drill queries (by ann
    above all), the garden ad on hose queries."""
    torch.set_num_threads(1)
    rng = random.Random(0)
    slot = AdSlotFactory(name="search-top")
    drill = AdFactory(title="Cordless drill", campaign=CampaignFactory())
    garden = AdFactory(title="Garden hose", campaign=CampaignFactory())
    now = timezone.now()
    rows, clicks = [], []
    for i in range(300):
        ad = drill if i % 2 else garden
        context = services.Context(query=rng.choice(["drill bits", "hose reel"]), customer=rng.choice(["ann", "bo"]))
        match = (ad is drill) == (context.query == "drill bits")
        clicks.append(rng.random() < (0.6 if match else 0.05) + (0.2 if context.customer == "ann" else 0.0))
        rows.append(
            ServedImpression(
                ad=ad,
                campaign=ad.campaign,
                slot=slot,
                pctr=0.01,
                bid=Decimal("1"),
                price=Decimal("0.5"),
                features=services.serving_features(ad=ad, slot=slot, context=context, now=now),
                context_text=context.text,
            )
        )
    ServedImpression.objects.bulk_create(rows)
    clicked = [r.pk for r, click in zip(rows, clicks) if click]
    ServedImpression.objects.filter(pk__in=clicked).update(clicked_at=now)
    return slot
