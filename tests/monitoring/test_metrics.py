"""The online metrics computed from synthetic logs in the real database, and their aggregation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ads.models import ServedImpression
from catalog.models import Event
from chatbot.models import Conversation, Intent, Message
from monitoring import metrics, services
from monitoring.models import MetricValue
from recommend.models import RecommendationLog
from search.models import SearchClick, SearchQueryLog
from tests.ads.conftest import AdFactory, AdSlotFactory
from tests.factories import EventFactory, ProductFactory

pytestmark = pytest.mark.django_db
HOUR = datetime(2026, 11, 30, 10, tzinfo=UTC)


def at(moment: datetime, model, **values):
    """Create a log row and set its auto_now_add time to ``moment``."""
    row = model.objects.create(**values)
    field = "served_at" if model is ServedImpression else "created_at"
    model.objects.filter(pk=row.pk).update(**{field: moment})
    return row


def value(name: str, version: str = metrics.ALL, dimension: str = "", start: datetime = HOUR) -> tuple[float, int]:
    rows = {(v, d): (val, n) for v, d, val, n in metrics.get(name).compute(start, start + timedelta(hours=1))}
    return rows[(version, dimension)]


def search_logs():
    """Four searches in the hour (one with no result, one corrected, one clicked at position 3), one after it."""
    product = ProductFactory()
    rows = [
        at(HOUR + timedelta(minutes=1), SearchQueryLog, text="drill", normalized="drill", result_count=5, latency_ms=10, model_version="v2"),
        at(HOUR + timedelta(minutes=2), SearchQueryLog, text="dril", normalized="dril", corrected="drill", result_count=5, latency_ms=20, model_version="v2"),
        at(HOUR + timedelta(minutes=3), SearchQueryLog, text="zzz", normalized="zzz", result_count=0, latency_ms=30, model_version="v1"),
        at(HOUR + timedelta(minutes=4), SearchQueryLog, text="saw", normalized="saw", result_count=2, latency_ms=1000, model_version="v2"),
        at(HOUR + timedelta(minutes=61), SearchQueryLog, text="late", normalized="late", result_count=0, latency_ms=5),
    ]  # fmt: skip
    SearchClick.objects.create(query=rows[0], product=product, position=3)
    return rows


def test_search_metrics_per_version_and_in_all():
    search_logs()
    assert value("search.queries") == (4.0, 4)
    assert value("search.queries", "v2") == (3.0, 3)
    assert value("search.zero_result_rate") == (0.25, 4)
    assert value("search.zero_result_rate", "v1") == (1.0, 1)
    assert value("search.ctr") == (0.25, 4)
    assert value("search.mean_click_position") == (3.0, 1)
    assert value("search.typo_corrected_share") == (0.25, 4)
    assert value("search.latency_p50") == (25.0, 4)  # percentile_cont of 10, 20, 30, 1000
    assert value("search.latency_p99")[0] == pytest.approx(30 + 0.97 * 970)


def test_chat_metrics_and_corrections_by_intent(db):
    billing, refund = Intent.objects.create(name="billing"), Intent.objects.create(name="refund")
    conversation = Conversation.objects.create(session="s1")
    outcomes = [("answered", 0.9, False, billing), ("clarify", 0.4, False, billing), ("out_of_scope", 0.1, False, None),
                ("answered", 0.8, True, refund)]  # fmt: skip
    for i, (outcome, confidence, hand_off, intent) in enumerate(outcomes):
        review = Message.Review.RELABELLED if i < 2 else Message.Review.NOT_NEEDED
        at(HOUR + timedelta(minutes=i), Message, conversation=conversation, text=f"m{i}", intent=intent,
           confidence=confidence, outcome=outcome, hand_off=hand_off, review_status=review)  # fmt: skip
    assert value("chatbot.messages", metrics.NONE) == (4.0, 4)
    assert value("chatbot.out_of_scope_rate") == (0.25, 4)
    assert value("chatbot.clarify_rate") == (0.25, 4)
    assert value("chatbot.hand_off_rate") == (0.25, 4)
    assert value("chatbot.confidence_p50")[0] == pytest.approx(0.6)
    assert value("chatbot.corrections", dimension="billing") == (2.0, 2)
    Message.objects.filter(text="m3").update(review_status=Message.Review.CONFIRMED)  # confidence 0.8
    assert value("chatbot.reviewed_accuracy", dimension="0.8-0.9") == (1.0, 1)
    assert value("chatbot.reviewed_accuracy", dimension="0.4-0.6") == (0.0, 1)  # 0.4, relabelled


def test_ads_calibration_spend_and_budget_share(db):
    ad, slot = AdFactory(campaign__daily_budget=Decimal("24")), AdSlotFactory()
    for i in range(10):
        clicked = HOUR + timedelta(minutes=30) if i < 2 else None
        at(HOUR + timedelta(minutes=i), ServedImpression, ad=ad, campaign=ad.campaign, slot=slot, pctr=0.1,
           bid=Decimal("1"), price=Decimal("0.5"), model_name="ctr-1", clicked_at=clicked,
           charged=Decimal("0.5") if clicked else None)  # fmt: skip
    assert value("ads.impressions", "ctr-1") == (10.0, 10)
    assert value("ads.clicks") == (2.0, 10)
    assert value("ads.ctr") == (0.2, 10)
    assert value("ads.mean_pctr")[0] == pytest.approx(0.1)
    assert value("ads.calibration_ratio")[0] == pytest.approx(2.0)
    assert value("ads.ctr_by_pctr", dimension="0.1-0.2") == (0.2, 10)
    campaign = str(ad.campaign_id)
    assert value("ads.spend", dimension=campaign) == (1.0, 2)
    assert value("ads.budget_used", dimension=campaign)[0] == pytest.approx(1.0 / 1.0)  # 24 a day = 1 an hour


def test_recommendation_clicks_are_attributed_through_rec_id(storefront_client):
    """The API's rec_id, echoed in an event, is a click on that answer's item, counted for its source."""
    for product in ProductFactory.create_batch(4):
        EventFactory(product=product, type=Event.Type.PURCHASE)
    answer = storefront_client.get("/api/v1/recommend/popular?k=3").json()
    assert len(answer["items"]) == 3 and answer["rec_id"]
    shown = answer["items"][0]["sku"]
    event = {"client_event_id": "rec-click-1", "product": shown, "type": "click", "rec_id": answer["rec_id"],
             "timestamp": timezone.now().isoformat()}  # fmt: skip
    again = {**event, "client_event_id": "rec-click-2", "type": "cart"}  # a second event on the same item
    assert storefront_client.post("/api/v1/events", {"events": [event, again]}, format="json").status_code == 201
    start = services.bucket_start(timezone.now(), "hour")
    assert value("recommend.impressions", dimension="popular", start=start) == (3.0, 3)
    assert value("recommend.clicks", dimension="popular", start=start) == (1.0, 1)
    assert value("recommend.ctr", start=start)[0] == pytest.approx(1 / 3)


def test_for_you_fallback_rate(storefront_client):
    ProductFactory()
    for customer in ("nobody", "nobody-else"):
        assert storefront_client.get(f"/api/v1/recommend/customers/{customer}").json()["fallback"] == "unknown_customer"
    start = services.bucket_start(timezone.now(), "hour")
    assert value("recommend.fallback_rate", start=start) == (1.0, 2)
    assert value("recommend.fallback_rate", dimension="unknown_customer", start=start) == (1.0, 2)


def test_computing_a_bucket_twice_stores_the_same_rows():
    search_logs()

    def stored():
        return sorted(
            MetricValue.objects.values_list("metric", "granularity", "start", "version", "dimension", "value", "count")
        )

    first = services.compute_period(granularity="day", start=HOUR)
    rows = stored()
    assert first == len(rows) > 0
    assert services.compute_period(granularity="day", start=HOUR + timedelta(hours=5)) == first
    assert stored() == rows
    assert {r[2] for r in rows} == {HOUR.replace(hour=0)}
    day = MetricValue.objects.get(metric="search.queries", granularity="day", version=metrics.ALL)
    assert day.value == 5  # the whole day: the hour's four and the one after it


def test_refresh_computes_the_current_and_previous_hour_and_day():
    search_logs()
    counts = services.refresh(now=HOUR + timedelta(minutes=70))
    assert counts["rows"] == MetricValue.objects.count()
    hours = set(MetricValue.objects.filter(granularity="hour").values_list("start", flat=True))
    assert hours == {HOUR, HOUR + timedelta(hours=1)}


def test_refresh_prunes_old_hourly_rows_and_answer_logs_and_keeps_daily_rows(settings):
    settings.METRICS_HOURLY_RETENTION_DAYS = settings.RECOMMENDATION_LOG_RETENTION_DAYS = 30
    now = HOUR + timedelta(days=40)
    for granularity, start in (("hour", HOUR), ("day", HOUR), ("hour", now - timedelta(days=29))):
        MetricValue.objects.create(metric="search.queries", granularity=granularity, start=start, value=1, count=1)
    old, recent = (at(moment, RecommendationLog, kind="popular") for moment in (HOUR, now - timedelta(days=29)))
    counts = services.refresh(now=now)
    assert (counts["pruned_hourly"], counts["pruned_rec_logs"]) == (1, 1)
    assert not MetricValue.objects.filter(granularity="hour", start=HOUR).exists()
    assert MetricValue.objects.filter(granularity="day", start=HOUR).exists()
    assert list(RecommendationLog.objects.values_list("pk", flat=True)) == [recent.pk]
    settings.METRICS_HOURLY_RETENTION_DAYS = 0
    MetricValue.objects.create(metric="search.queries", granularity="hour", start=HOUR, value=1, count=1)
    assert services.refresh(now=now)["pruned_hourly"] == 0


def test_each_metric_has_the_rows_its_definition_declares(storefront_client):
    """``versioned=False``: only version "all"; ``totalled=False``: no row with dimension "" (what alert rules rely on)."""
    search_logs()
    test_chat_metrics_and_corrections_by_intent(None)
    test_ads_calibration_spend_and_budget_share(None)
    rows = {name: metric.compute(HOUR, HOUR + timedelta(hours=1)) for name, metric in metrics.METRICS.items()}
    for name, metric in metrics.METRICS.items():
        if not metric.versioned:
            assert {v for v, *_ in rows[name]} <= {metrics.ALL}, name
        if not metric.totalled:
            assert all(d for _, d, *_ in rows[name]), name
    assert {name for name, found in rows.items() if found} >= {"search.ctr", "chatbot.corrections", "ads.spend"}
