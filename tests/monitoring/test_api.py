"""The monitoring API (staff) and Prometheus' /metrics read the aggregate rows."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from monitoring import metrics, services
from monitoring.models import AlertRule, MetricValue
from search.models import SearchQueryLog
from tests.monitoring.test_metrics import at

pytestmark = pytest.mark.django_db


@pytest.fixture
def refreshed():
    """Four searches logged now, and the metrics refreshed (now: a minute ago could be the last hour)."""
    moment = timezone.now()
    for i in range(4):
        at(moment, SearchQueryLog, text="q", normalized="q", result_count=0 if i == 0 else 2, latency_ms=12,
           model_version="v7")  # fmt: skip
    services.refresh(now=moment)


def test_definitions_list_every_metric(staff_client):
    body = staff_client.get("/api/v1/metrics/definitions").json()
    assert [m["name"] for m in body] == list(metrics.METRICS)
    assert {"name": "recommend.ctr", "app": "recommend", "unit": "ratio", "dimension": "source"}.items() <= next(
        m for m in body if m["name"] == "recommend.ctr"
    ).items()


def test_a_dimension_sent_empty_filters_the_totals(staff_client):
    start = timezone.now().replace(minute=0, second=0, microsecond=0)
    for dimension, value in (("", 0.5), ("model", 0.7), ("popular", 0.1)):
        MetricValue.objects.create(metric="recommend.ctr", granularity="hour", start=start, dimension=dimension,
                                   value=value, count=10)  # fmt: skip
    rows = lambda query: [r["value"] for r in staff_client.get(f"/api/v1/metrics/values?{query}").json()["results"]]  # noqa: E731
    assert rows("dimension=") == [0.5]
    assert rows("dimension=model") == [0.7]
    assert sorted(rows("metric=recommend.ctr")) == [0.1, 0.5, 0.7]


def test_values_filtered_by_metric_granularity_and_version(staff_client, refreshed):
    body = staff_client.get("/api/v1/metrics/values?metric=search.zero_result_rate&granularity=hour&version=v7").json()
    assert [(r["value"], r["count"]) for r in body["results"]] == [(0.25, 4)]
    apps = staff_client.get("/api/v1/metrics/values?metric__startswith=search.&granularity=day").json()
    assert apps["count"] > 0 and all(r["metric"].startswith("search.") for r in apps["results"])
    assert staff_client.get("/api/v1/metrics/values?granularity=week").status_code == 400


def test_values_and_alerts_are_staff_only(storefront_client):
    for url in ("/api/v1/metrics/values", "/api/v1/metrics/alerts", "/api/v1/metrics/definitions"):
        assert storefront_client.get(url).status_code == 403


def test_alerts_list(staff_client, refreshed):
    AlertRule.objects.create(name="zero", metric="search.zero_result_rate", threshold=0.1, min_count=1)
    services.check_rules()
    body = staff_client.get("/api/v1/metrics/alerts?state=firing").json()
    assert [(a["rule"], a["state"], a["value"]) for a in body["results"]] == [("zero", "firing", 0.25)]


def test_prometheus_exposition_of_the_current_hour_and_day(staff_client, refreshed):
    response = staff_client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }
    assert samples[("commerce_search_zero_result_rate", (("period", "hour"), ("version", "v7")))] == 0.25
    assert samples[("commerce_search_queries_observations", (("period", "day"), ("version", "all")))] == 4
    assert samples[("commerce_metrics_computed_timestamp_seconds", ())] > 0


def test_a_scrape_reads_the_aggregates_not_the_logs(staff_client, refreshed):
    with CaptureQueriesContext(connection) as queries:
        assert staff_client.get("/metrics").status_code == 200
    assert not any(SearchQueryLog._meta.db_table in q["sql"] for q in queries.captured_queries)


def test_prometheus_scrapes_with_the_bearer_token(api_client, monkeypatch, refreshed):
    assert api_client.get("/metrics").status_code in (401, 403)
    monkeypatch.setattr(settings, "METRICS_TOKEN", "scrape-secret")
    assert api_client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code in (401, 403)
    assert api_client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200
    assert api_client.get("/metrics", HTTP_AUTHORIZATION="Bearer \xe9t\xe9").status_code in (401, 403)  # not a 500


def test_the_refresh_task_is_scheduled_and_runs(refreshed):
    from monitoring.tasks import refresh

    schedule = settings.CELERY_BEAT_SCHEDULE["refresh-online-metrics"]
    assert schedule["task"] == refresh.name and schedule["schedule"] == settings.METRICS_REFRESH_SECONDS
    assert refresh.apply().get()["rows"] > 0


def test_a_time_filter_with_an_offset_postgresql_refuses_is_read_in_utc(staff_client):
    """+23:13 was a 500 (PostgreSQL's offsets stop at 15:59); in UTC it is a time like any other."""
    assert staff_client.get("/api/v1/metrics/values", {"start__gte": "0712-09-28T10:31:15+23:13"}).status_code == 200


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "yesterday"])
def test_a_time_filter_out_of_range_or_unreadable_is_a_400(staff_client, moment):
    response = staff_client.get("/api/v1/metrics/values", {"start__gte": moment})
    assert response.status_code == 400 and "start__gte" in response.json()


def test_a_time_filter_with_an_offset_is_read_in_utc(staff_client, refreshed):
    hour = services.bucket_start(timezone.now(), "hour")
    shifted = hour.astimezone(timezone.get_fixed_timezone(13 * 60 + 30)).isoformat()
    body = staff_client.get("/api/v1/metrics/values", {"start__gte": shifted, "granularity": "hour"}).json()
    assert body["count"] > 0 and {r["start"][:13] for r in body["results"]} == {hour.isoformat()[:13]}
