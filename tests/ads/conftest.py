"""Factories and fixtures of the ads tests."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import factory
import pytest

from ads.models import Ad, AdSlot, Advertiser, Campaign


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
    from ads import services

    monkeypatch.setattr(services, "CATALOGUE_SECONDS", 0.0)
    services.SCORER.reset()
    yield
    services.SCORER.reset()


@pytest.fixture
def models_dir(tmp_path, settings) -> Path:
    """Model folders of the test go to a temporary folder."""
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR
