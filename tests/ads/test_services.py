"""Ad selection (eligibility, ranking, reserve, second price) and click charging on the real database."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from ads import budget, services
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


def test_ads_deleted_or_paused_while_the_serving_catalogue_holds_them_are_left_out(slot, monkeypatch):
    monkeypatch.setattr(services, "CATALOGUE_SECONDS", 60.0)  # as in production, where it is a few seconds
    kept, gone, paused = (AdFactory(campaign=CampaignFactory(bid_per_click=Decimal(b))) for b in ("1", "2", "3"))
    assert len(services.select_ads(slot=slot.name, k=3)["ads"]) == 3
    gone.campaign.delete()
    paused.campaign.active = False
    paused.campaign.save()

    result = services.select_ads(slot=slot.name, k=3)

    assert result["candidates"] == 3  # still in this process's catalogue copy
    assert [a["ad_id"] for a in result["ads"]] == [kept.pk]
    assert ServedImpression.objects.filter(ad=kept).count() == 2


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


def serve_until_refused(slot_name: str, most: int = 50) -> list[str]:
    """Select ads in ``slot_name`` until none is served (or ``most`` times); return the tokens served."""
    tokens = []
    for _ in range(most):
        ads = services.select_ads(slot=slot_name)["ads"]
        if not ads:
            break
        tokens.append(ads[0]["token"])
    return tokens


def test_outstanding_tokens_reserve_the_budget_so_every_click_on_them_is_charged():
    slot = AdSlotFactory(name="budget", reserve_price=Decimal("0.009"))  # a lone ad pays reserve / pCTR (about 0.9)
    campaign = CampaignFactory(daily_budget=Decimal("3"), bid_per_click=Decimal("1"))
    AdFactory(campaign=campaign)

    tokens = serve_until_refused(slot.name)
    charged = [services.record_click(token=t)["charged"] for t in tokens]

    prices = [ServedImpression.objects.get(token=t).price for t in tokens]
    assert len(tokens) == 3  # a 4th token would reserve more than the budget (4 x 0.9+)
    assert charged == prices and all(c > 0 for c in charged)
    assert CampaignSpend.objects.get().amount == sum(prices) <= campaign.daily_budget


def test_a_click_turns_its_reservation_into_spend():
    slot = AdSlotFactory(name="budget", reserve_price=Decimal("0.009"))
    campaign = CampaignFactory(daily_budget=Decimal("1.8"), bid_per_click=Decimal("1"))
    AdFactory(campaign=campaign)
    [token] = serve_until_refused(slot.name)  # 0.9 reserved: no room for another click at the bid of 1
    price = ServedImpression.objects.get(token=token).price
    now = timezone.now()
    reserved = budget.committed_amounts(now=now)

    services.record_click(token=token)

    assert reserved == budget.committed_amounts(now=now) == {campaign.pk: price}
    assert CampaignSpend.objects.get().amount == price
    assert serve_until_refused(slot.name) == []


def test_an_expired_token_releases_its_reservation_and_its_click_is_refused_uncharged():
    slot = AdSlotFactory(name="budget", reserve_price=Decimal("0.009"))
    AdFactory(campaign=CampaignFactory(daily_budget=Decimal("1.5"), bid_per_click=Decimal("1")))
    [old] = serve_until_refused(slot.name)
    window = timedelta(seconds=budget.CLICK_TOKEN_SECONDS)
    ServedImpression.objects.filter(token=old).update(served_at=F("served_at") - window)

    [new] = serve_until_refused(slot.name)
    with pytest.raises(services.ExpiredToken, match="expired") as expired:
        services.record_click(token=old)
    fresh = services.record_click(token=new)

    assert expired.value.field == "token"
    assert ServedImpression.objects.get(token=old).clicked_at is None
    assert fresh["charged"] > 0 and CampaignSpend.objects.get().amount == fresh["charged"]


def test_click_after_the_budget_was_lowered_is_recorded_but_not_charged():
    slot = AdSlotFactory(name="budget", reserve_price=Decimal("0.009"))
    campaign = CampaignFactory(daily_budget=Decimal("1.5"), bid_per_click=Decimal("1"))
    AdFactory(campaign=campaign)
    [token] = serve_until_refused(slot.name)
    campaign.daily_budget = Decimal("0.5")
    campaign.save()

    click = services.record_click(token=token)

    assert (click["charged"], click["budget_exhausted"]) == (Decimal("0"), True)
    assert CampaignSpend.objects.get().amount == Decimal("0")
    assert ServedImpression.objects.get(token=token).clicked_at is not None


def test_a_click_after_midnight_is_charged_to_the_day_its_token_was_served(monkeypatch):
    slot = AdSlotFactory(name="budget")
    AdFactory(campaign=CampaignFactory())
    before_midnight = datetime(2030, 5, 1, 23, 59, 30, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: before_midnight)
    [token] = serve_until_refused(slot.name, most=1)
    monkeypatch.setattr(timezone, "now", lambda: before_midnight + timedelta(minutes=1))

    services.record_click(token=token)

    assert CampaignSpend.objects.get(amount__gt=0).day == before_midnight.date()


def run_concurrently(work, items: list, threads: int = 10) -> None:
    """Run ``work(batch)`` on ``threads`` threads started together, each with every ``threads``-th item."""
    barrier = threading.Barrier(threads)

    def run(batch):
        try:
            barrier.wait()
            work(batch)
        finally:
            connection.close()

    workers = [threading.Thread(target=run, args=(items[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


@pytest.mark.django_db(transaction=True)
def test_concurrent_selections_never_reserve_past_the_daily_budget():
    slot = AdSlotFactory(name="concurrent", reserve_price=Decimal("0.009"))  # each click costs 0.9-1.0
    campaign = CampaignFactory(daily_budget=Decimal("5"), bid_per_click=Decimal("1"))
    AdFactory(campaign=campaign)
    tokens: list[str] = []

    def select(batch):
        for _ in batch:
            tokens.extend(ad["token"] for ad in services.select_ads(slot=slot.name)["ads"])

    run_concurrently(select, list(range(30)))
    charged = [services.record_click(token=t)["charged"] for t in tokens]

    assert len(tokens) == 5  # 5 x 0.9+ fits the budget of 5, a 6th would not
    assert all(c > 0 for c in charged)
    assert CampaignSpend.objects.get(campaign=campaign).amount == sum(charged) <= campaign.daily_budget


@pytest.mark.django_db(transaction=True)
def test_concurrent_clicks_charge_each_token_once_and_never_push_spend_past_the_daily_budget():
    slot = AdSlotFactory(name="concurrent", reserve_price=Decimal("0.009"))  # each click costs 0.9-1.0
    campaign = CampaignFactory(daily_budget=Decimal("5"), bid_per_click=Decimal("1"))
    AdFactory(campaign=campaign)
    tokens = serve_until_refused(slot.name)
    results: list = []
    errors: list = []

    def click(batch):
        for token in batch:
            try:
                results.append(services.record_click(token=token)["charged"])
            except services.AlreadyClicked as exc:
                errors.append(exc.field)

    run_concurrently(click, tokens * 2)  # every token clicked twice, the replays racing the first clicks

    spend = CampaignSpend.objects.get(campaign=campaign)
    assert len(tokens) == spend.clicks == 5 and Decimal("4.5") <= spend.amount <= Decimal("5")
    assert sum(results) == spend.amount and len(results) == 5 and all(c > 0 for c in results)
    assert errors == ["token"] * 5
    assert ServedImpression.objects.filter(charged__gt=0).count() == 5
