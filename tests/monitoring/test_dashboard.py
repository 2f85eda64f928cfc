"""The admin's monitoring dashboards: staff pages drawn from the aggregate rows, never the raw logs."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ads.models import ServedImpression
from backbone.models import ModelVersion
from monitoring import metrics, services
from monitoring.dashboard import bucket_label
from monitoring.models import MetricValue
from search.models import SearchQueryLog, SearchRanker
from tests.ads.conftest import AdFactory, AdSlotFactory
from tests.monitoring.test_metrics import at

pytestmark = pytest.mark.django_db
PAGES = ["/admin/monitoring/metricvalue/dashboard/"] + [
    f"/admin/monitoring/metricvalue/dashboard/{app}/" for app in ("search", "recommend", "chatbot", "ads")
]
RAW_LOGS = ["search_searchquerylog", "chatbot_message", "ads_servedimpression", "recommend_recommendationlog"]


def embedded(response) -> dict:
    """The charts' JSON the page hands to its script."""
    match = re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', response.content.decode())
    return json.loads(match.group(1))


def series(chart: dict, label: str) -> list:
    return next(d["data"] for d in chart["datasets"] if d["label"] == label)


@pytest.fixture
def searched():
    """Three searches by v1 and v2 a few minutes ago (one with no result), aggregated; returns when."""
    moment = timezone.now() - timedelta(minutes=5)
    for i, version in enumerate(["v1", "v2", "v2"]):
        at(moment, SearchQueryLog, text="q", normalized="q", result_count=i, latency_ms=10, model_version=version)
    services.refresh(now=moment)
    return moment


@pytest.mark.parametrize("page", PAGES)
def test_every_page_answers_staff_with_no_data_yet(admin_client, page):
    response = admin_client.get(page)
    assert response.status_code == 200
    assert "No data yet." in response.content.decode()
    assert embedded(response) == {}


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_users_are_sent_to_the_login(client, page):
    response = client.get(page)
    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


def test_staff_without_the_view_permission_on_metric_values_is_refused(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("clerk", password="pw-clerk-1", is_staff=True))
    assert client.get(PAGES[1]).status_code == 403


def test_hourly_series_are_one_line_per_version_over_the_last_48_hours(admin_client, searched):
    charts = embedded(admin_client.get("/admin/monitoring/metricvalue/dashboard/search/"))
    queries = charts["search.queries"]
    assert len(queries["labels"]) == 48 and [d["label"] for d in queries["datasets"]] == [metrics.ALL, "v1", "v2"]
    at_hour = queries["labels"].index(bucket_label(services.bucket_start(searched, "hour"), "hour"))
    assert [series(queries, v)[at_hour] for v in (metrics.ALL, "v1", "v2")] == [3.0, 1.0, 2.0]
    assert series(queries, metrics.ALL)[at_hour - 2] is None  # no row for an hour with nothing computed
    assert series(charts["search.zero_result_rate"], "v1")[at_hour] == 1.0


def test_daily_series_cover_the_last_30_days(admin_client, searched):
    charts = embedded(admin_client.get("/admin/monitoring/metricvalue/dashboard/search/?range=30d"))
    queries = charts["search.queries"]
    assert len(queries["labels"]) == 30
    assert queries["labels"][-1] == bucket_label(services.bucket_start(timezone.now(), "day"), "day")
    assert series(queries, metrics.ALL)[queries["labels"].index(bucket_label(searched, "day"))] == 3.0


def test_dimensioned_metrics_are_one_line_per_dimension_value_with_the_total_first(admin_client):
    start = services.bucket_start(timezone.now(), "hour")
    for version, source, value in [("all", "", 9), ("all", "popular", 6), ("all", "similar", 3), ("r1", "popular", 6)]:
        MetricValue.objects.create(metric="recommend.impressions", granularity="hour", start=start, version=version,
                                   dimension=source, value=value, count=value)  # fmt: skip
    chart = embedded(admin_client.get("/admin/monitoring/metricvalue/dashboard/recommend/"))["recommend.impressions"]
    assert [(d["label"], d["data"][-1]) for d in chart["datasets"]] == [("total", 9), ("popular", 6), ("similar", 3)]


def test_ads_calibration_is_observed_ctr_per_pctr_bin_weighted_by_count_with_the_diagonal(admin_client):
    ad, slot = AdFactory(), AdSlotFactory()
    moment = timezone.now() - timedelta(minutes=5)
    for i in range(10):  # today: 2 of 10 clicked at pCTR 0.15
        at(moment, ServedImpression, ad=ad, campaign=ad.campaign, slot=slot, pctr=0.15, bid=Decimal("1"),
           price=Decimal("0.5"), model_name="ctr-1", clicked_at=moment if i < 2 else None)  # fmt: skip
    services.refresh(now=moment)
    yesterday = services.bucket_start(moment, "day") - timedelta(days=1)  # 15 of 30 in the same bin
    MetricValue.objects.create(metric="ads.ctr_by_pctr", granularity="day", start=yesterday, version=metrics.ALL,
                               dimension="0.1-0.2", value=0.5, count=30)  # fmt: skip
    chart = embedded(admin_client.get("/admin/monitoring/metricvalue/dashboard/ads/"))["calibration"]
    [point] = series(chart, metrics.ALL)
    assert point["x"] == pytest.approx(0.15) and point["bin"] == "0.1-0.2" and point["n"] == 40
    assert point["y"] == pytest.approx((0.2 * 10 + 0.5 * 30) / 40)
    assert series(chart, "ctr-1")[0]["y"] == pytest.approx(0.2)
    assert series(chart, "calibrated (y = x)") == [{"x": 0, "y": 0}, {"x": 0.2, "y": 0.2}]


def test_chat_calibration_is_the_confirmed_share_per_confidence_bin(admin_client):
    today = services.bucket_start(timezone.now(), "day")
    for dimension, value, count in [("0.8-0.9", 0.75, 4), ("0.4-0.6", 0.5, 2), ("", 0.0, 1)]:
        MetricValue.objects.create(metric="chatbot.reviewed_accuracy", granularity="day", start=today,
                                   version=metrics.ALL, dimension=dimension, value=value, count=count)  # fmt: skip
    chart = embedded(admin_client.get("/admin/monitoring/metricvalue/dashboard/chatbot/"))["calibration"]
    assert [(p["bin"], p["y"]) for p in series(chart, metrics.ALL)] == [("0.4-0.6", 0.5), ("0.8-0.9", 0.75)]


def test_loss_curves_of_the_active_and_previous_backbone_versions(admin_client, tmp_path):
    steps = [{"step": 10, "loss_intents": 2.0, "loss_search": 1.0}, {"step": 20, "loss_intents": 1.5}]
    history = {"history": [*steps, {"step": 30, "loss_intents": float("nan")}]}  # a diverged run writes NaN
    for name in ("old", "new"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "training.json").write_text(json.dumps(history))
    now = timezone.now()
    ModelVersion.objects.create(name="ancient", state="retired", activated_at=now - timedelta(days=9), path="/nowhere")
    ModelVersion.objects.create(
        name="old", state="retired", activated_at=now - timedelta(days=1), path=str(tmp_path / "old")
    )
    ModelVersion.objects.create(name="new", state="active", activated_at=now, path=str(tmp_path / "new"), tasks=["intents"],
                                metrics={"tasks": {"intents": {"accuracy": 0.91234, "ece": 0.05}}})  # fmt: skip
    response = admin_client.get("/admin/monitoring/metricvalue/dashboard/chatbot/")
    chart = embedded(response)["loss"]
    assert [d["label"] for d in chart["datasets"]] == ["new (active)", "old (retired)"]
    assert series(chart, "new (active)") == [{"x": 10, "y": 2.0}, {"x": 20, "y": 1.5}, {"x": 30, "y": None}]
    assert "NaN" not in response.content.decode()  # the browser's JSON.parse would reject the page's data
    assert "0.9123" in response.content.decode()  # the intents head's validation accuracy, in the table
    index = embedded(admin_client.get("/admin/monitoring/metricvalue/dashboard/"))["loss"]
    assert {d["label"] for d in index["datasets"]} >= {"new (active) intents", "new (active) search"}


def test_a_missing_training_history_is_no_chart_rather_than_an_error(admin_client):
    ModelVersion.objects.create(name="base", state="active", path="/nowhere", tasks=["search"])
    response = admin_client.get("/admin/monitoring/metricvalue/dashboard/search/")
    assert response.status_code == 200 and "loss" not in embedded(response)


def test_the_app_models_table_shows_validation_metrics(admin_client):
    version = ModelVersion.objects.create(name="bb", state="active")
    SearchRanker.objects.create(name="search-7", state="active", backbone_version=version,
                                metrics={"held_out": {"ndcg@10": 0.61234, "fusion_ndcg@10": 0.5}, "queries": 900})  # fmt: skip
    page = admin_client.get("/admin/monitoring/metricvalue/dashboard/search/").content.decode()
    assert all(text in page for text in ("search-7", "0.6123", "900"))


def test_an_unknown_app_is_not_found(admin_client):
    assert admin_client.get("/admin/monitoring/metricvalue/dashboard/billing/").status_code == 404


def test_an_unknown_range_is_a_bad_request(admin_client):
    assert admin_client.get("/admin/monitoring/metricvalue/dashboard/search/?range=7y").status_code == 400


def test_the_dashboard_is_linked_from_the_metric_values_and_the_monitoring_section(admin_client):
    for page in ("/admin/monitoring/metricvalue/", "/admin/monitoring/"):
        assert 'href="/admin/monitoring/metricvalue/dashboard/"' in admin_client.get(page).content.decode()


@pytest.mark.parametrize("page", PAGES)
def test_a_page_reads_no_raw_log_table(admin_client, searched, page):
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(page, {"range": "30d"} if page != PAGES[0] else {}).status_code == 200
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert MetricValue._meta.db_table in sql or page == PAGES[0]
    assert not [table for table in RAW_LOGS if table in sql]
