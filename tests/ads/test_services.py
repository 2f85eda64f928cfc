"""Ad selection (eligibility, ranking, reserve, second price) and click charging on the real database."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from ads import services
from ads.models import CampaignSpend, ServedImpression
from tests.ads.conftest import AdFactory, AdSlotFactory, CampaignFactory
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_ads_are_ranked_by_bid_times_historical_ctr_one_per_campaign(slot):
    cheap = AdFactory(campaign=CampaignFactory(bid_per_click=Decimal("0.50")))
    rich = AdFactory(campaign=CampaignFactory(bid_per_click=Decimal("2.00")))
    AdFactory(campaign=rich.campaign)  # a second ad of the same campaign is never shown beside the first

    result = services.select_ads(slot="search-top", k=3)

    assert result["model"] == "historical_ctr"
    assert [a["ad_id"] for a in result["ads"]] == [rich.pk, cheap.pk]
    assert ServedImpression.objects.count() == 2
    assert len({a["token"] for a in result["ads"]}) == 2


def test_winner_pays_the_second_price_and_the_last_pays_the_reserve():
    slot = AdSlotFactory(name="pdp", reserve_price=Decimal("0.002"))
    first = AdFactory(campaign=CampaignFactory(bid_per_click=Decimal("2.00")))
    second = AdFactory(campaign=CampaignFactory(bid_per_click=Decimal("1.00")))

    ads = services.select_ads(slot=slot.name, k=2)["ads"]

    # same prior pCTR (0.01) for both: the winner pays what keeps it above the runner-up's bid
    assert [a["ad_id"] for a in ads] == [first.pk, second.pk]
    assert ads[0]["price_per_click"] == Decimal("1.0000")
    assert ads[1]["price_per_click"] == Decimal("0.2000")  # reserve 0.002 / pCTR 0.01


def test_reserve_price_filters_ads_with_low_expected_value():
    slot = AdSlotFactory(name="home", reserve_price=Decimal("0.015"))
    AdFactory(campaign=CampaignFactory(bid_per_click=Decimal("1.00")))  # ev 0.01 < 0.015
    high = AdFactory(campaign=CampaignFactory(bid_per_click=Decimal("2.00")))  # ev 0.02

    ads = services.select_ads(slot=slot.name, k=3)["ads"]

    assert [a["ad_id"] for a in ads] == [high.pk]


def test_targeting_by_category_keyword_schedule_and_dates(slot):
    product = ProductFactory(sku="SAW-1", title="Circular saw", category_path="tools/saws")
    now = timezone.now()
    tools = AdFactory(campaign=CampaignFactory(target_categories=["tools"]))
    garden = AdFactory(campaign=CampaignFactory(target_categories=["garden"]))
    drills = AdFactory(campaign=CampaignFactory(target_keywords=["drill"]))
    other_hour = AdFactory(campaign=CampaignFactory(schedule_hours=[(now.hour + 12) % 24]))
    ended = AdFactory(campaign=CampaignFactory(end_date=(now - timedelta(days=2)).date()))
    later = AdFactory(campaign=CampaignFactory(start_date=(now + timedelta(days=2)).date()))

    shown = {a["ad_id"] for a in services.select_ads(slot=slot.name, product=product.sku, k=10)["ads"]}
    by_query = {a["ad_id"] for a in services.select_ads(slot=slot.name, query="cordless DRILL", k=10)["ads"]}

    assert tools.pk in shown and drills.pk not in shown
    assert drills.pk in by_query and tools.pk not in by_query
    assert not {garden.pk, other_hour.pk, ended.pk, later.pk} & (shown | by_query)


def test_campaign_that_cannot_afford_a_click_is_not_eligible(slot):
    campaign = CampaignFactory(daily_budget=Decimal("3"), bid_per_click=Decimal("1"))
    AdFactory(campaign=campaign)
    CampaignSpend.objects.create(campaign=campaign, day=timezone.now().date(), amount=Decimal("2.5"))

    assert services.select_ads(slot=slot.name, k=3)["ads"] == []


def test_unknown_slot_and_unknown_product_are_refused_and_log_nothing(slot):
    AdFactory()
    with pytest.raises(services.AdsError, match="unknown or inactive ad slot") as slot_error:
        services.select_ads(slot="nowhere")
    with pytest.raises(services.AdsError, match="unknown product") as product_error:
        services.select_ads(slot=slot.name, product="NOPE")

    assert slot_error.value.field == "slot"
    assert product_error.value.field == "context"
    assert ServedImpression.objects.count() == 0


def test_a_click_is_charged_once_at_the_second_price(slot):
    AdFactory(campaign=CampaignFactory(bid_per_click=Decimal("2.00")))
    AdFactory(campaign=CampaignFactory(bid_per_click=Decimal("1.00")))
    token = services.select_ads(slot=slot.name, k=1)["ads"][0]["token"]

    first = services.record_click(token=token)
    with pytest.raises(services.AlreadyClicked, match="already clicked"):
        services.record_click(token=token)

    assert first["charged"] == Decimal("1.0000") and not first["budget_exhausted"]
    spend = CampaignSpend.objects.get()
    assert (spend.amount, spend.clicks) == (Decimal("1.0000"), 1)


def test_unknown_token_is_refused_and_charges_nothing():
    with pytest.raises(services.UnknownImpression, match="unknown impression token"):
        services.record_click(token="no-such-token")

    assert not CampaignSpend.objects.exists()


def test_click_beyond_the_budget_is_recorded_but_not_charged():
    slot = AdSlotFactory(name="budget", reserve_price=Decimal("0.009"))  # a lone ad pays reserve / pCTR (about 0.9)
    campaign = CampaignFactory(daily_budget=Decimal("1.5"), bid_per_click=Decimal("1"))
    AdFactory(campaign=campaign)
    tokens = [services.select_ads(slot=slot.name)["ads"][0]["token"] for _ in range(2)]
    first_price = ServedImpression.objects.get(token=tokens[0]).price

    charged = [services.record_click(token=t)["charged"] for t in tokens]

    assert Decimal("0.9") <= first_price <= Decimal("1")
    assert charged == [first_price, Decimal("0")]
    assert CampaignSpend.objects.get().amount == first_price
    assert ServedImpression.objects.filter(clicked_at__isnull=False).count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_clicks_never_push_spend_past_the_daily_budget():
    slot = AdSlotFactory(name="concurrent", reserve_price=Decimal("0.009"))  # each click costs 0.9-1.0
    campaign = CampaignFactory(daily_budget=Decimal("5"), bid_per_click=Decimal("1"))
    AdFactory(campaign=campaign)
    tokens = [services.select_ads(slot=slot.name)["ads"][0]["token"] for _ in range(20)]
    tokens += tokens[:10]  # replays race with first clicks too
    results: list = []
    errors: list = []
    barrier = threading.Barrier(10)

    def click(batch):
        try:
            barrier.wait()
            for token in batch:
                try:
                    results.append(services.record_click(token=token)["charged"])
                except services.AlreadyClicked as exc:
                    errors.append(exc.field)
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=(tokens[i::10],)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    spend = CampaignSpend.objects.get(campaign=campaign)
    assert spend.clicks == 5 and Decimal("4.5") <= spend.amount <= Decimal("5")
    assert sum(results) == spend.amount and len(results) == 20
    assert errors == ["token"] * 10
    assert ServedImpression.objects.filter(charged__gt=0).count() == 5
