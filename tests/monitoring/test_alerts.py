"""Alert rules fire on synthetic data, are sent by mail and webhook, resolve, and refuse bad rules."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from ads.models import ServedImpression
from monitoring import services
from monitoring.models import Alert, AlertRule
from search.models import SearchQueryLog
from tests.ads.conftest import AdFactory, AdSlotFactory
from tests.monitoring.test_metrics import at

pytestmark = pytest.mark.django_db


@pytest.fixture
def webhook():
    """A real HTTP server on a free port that keeps the JSON bodies POSTed to it."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def searches(n: int, *, zero: int, latency_ms: float = 10.0, minutes_ago: int = 5):
    for i in range(n):
        at(timezone.now() - timedelta(minutes=minutes_ago), SearchQueryLog, text=f"q{i}", normalized=f"q{i}",
           result_count=0 if i < zero else 3, latency_ms=latency_ms)  # fmt: skip


def test_zero_result_rate_rule_fires_once_is_sent_and_resolves(webhook, settings):
    url, received = webhook
    rule = AlertRule.objects.create(name="zero results", metric="search.zero_result_rate", threshold=0.15,
                                    min_count=10, emails="ops@example.com", webhook_url=url)  # fmt: skip
    searches(20, zero=5)  # 25%
    assert services.check_rules() == {"fired": 1, "resolved": 0}
    alert = Alert.objects.get(rule=rule, state="firing")
    assert alert.value == pytest.approx(0.25) and alert.count == 20
    assert [m.to for m in mail.outbox] == [["ops@example.com"]] and "zero results" in mail.outbox[0].subject
    assert received and received[0]["rule"] == "zero results" and received[0]["value"] == pytest.approx(0.25)
    assert any("204" in line for line in alert.notified)

    assert services.check_rules() == {"fired": 0, "resolved": 0}  # still breached: the same alert, not sent again
    assert len(mail.outbox) == 1 and Alert.objects.count() == 1

    searches(80, zero=0)  # 5 of 100
    assert services.check_rules() == {"fired": 0, "resolved": 1}
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.last_value == pytest.approx(0.05)


def test_a_window_with_too_few_observations_is_not_judged():
    AlertRule.objects.create(name="zero results", metric="search.zero_result_rate", threshold=0.15, min_count=50)
    searches(20, zero=20)
    assert services.check_rules()["fired"] == 0


def test_an_old_breach_outside_the_window_does_not_fire():
    AlertRule.objects.create(name="zero results", metric="search.zero_result_rate", threshold=0.15, min_count=1)
    searches(20, zero=20, minutes_ago=90)  # the rule's window is the last hour
    assert services.check_rules()["fired"] == 0


def test_p99_latency_rule_fires():
    AlertRule.objects.create(name="slow search", metric="search.latency_p99", threshold=500, min_count=1)
    searches(10, zero=0, latency_ms=800)
    assert services.check_rules()["fired"] == 1


def test_ads_calibration_rule_outside_a_band_fires_over_a_day():
    AlertRule.objects.create(name="pCTR drift", metric="ads.calibration_ratio", comparison="outside",
                             threshold=0.8, upper=1.25, window_minutes=AlertRule.Window.DAY, min_count=10)  # fmt: skip
    ad, slot = AdFactory(), AdSlotFactory()
    for i in range(20):  # predicted 0.05, observed 0.25: ratio 5
        at(timezone.now() - timedelta(hours=20), ServedImpression, ad=ad, campaign=ad.campaign, slot=slot, pctr=0.05,
           bid=Decimal("1"), price=Decimal("0.5"), clicked_at=timezone.now() if i < 5 else None)  # fmt: skip
    assert services.check_rules()["fired"] == 1
    assert "outside 0.8-1.25 over 1 day" in Alert.objects.get().message


def test_an_unreachable_webhook_is_recorded_and_other_rules_still_run():
    AlertRule.objects.create(
        name="a", metric="search.queries", threshold=1, min_count=1, webhook_url="http://127.0.0.1:9/x"
    )
    AlertRule.objects.create(name="b", metric="search.zero_result_rate", threshold=0.1, min_count=1)
    searches(5, zero=5)
    assert services.check_rules()["fired"] == 2
    assert "failed" in Alert.objects.get(rule__name="a").notified[-1]


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({"metric": "search.nonsense"}, "metric", "Select a valid choice"),
        ({"comparison": "outside"}, "upper", "needs an upper bound"),
        ({"comparison": "outside", "upper": "0.1"}, "upper", "needs an upper bound"),
        ({"upper": "0.9"}, "upper", "Only"),
        ({"dimension": "model"}, "dimension", "has no dimension"),
        ({"metric": "ads.spend"}, "dimension", "has no total"),
        ({"metric": "recommend.fallback_rate", "version": "rec-1"}, "version", "all versions only"),
        ({"window_minutes": "7"}, "window_minutes", "Select a valid choice"),
        ({"webhook_url": "not a url"}, "webhook_url", "Enter a valid URL"),
    ],
)
def test_a_bad_rule_is_a_form_error_in_the_admin_and_nothing_is_saved(admin_client, fields, field, message):
    form = {"name": "r", "metric": "search.zero_result_rate", "version": "all", "comparison": "above",
            "threshold": "0.15", "window_minutes": "60", "min_count": "20", "active": "on",
            "alerts-TOTAL_FORMS": "0", "alerts-INITIAL_FORMS": "0", **fields}  # fmt: skip
    response = admin_client.post("/admin/monitoring/alertrule/add/", form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors and message in " ".join(errors[field])
    assert not AlertRule.objects.exists()


def test_a_good_rule_saves_in_the_admin(admin_client):
    form = {"name": "drift", "metric": "ads.calibration_ratio", "version": "all", "comparison": "outside",
            "threshold": "0.8", "upper": "1.25", "window_minutes": "1440", "min_count": "100", "active": "on",
            "alerts-TOTAL_FORMS": "0", "alerts-INITIAL_FORMS": "0"}  # fmt: skip
    assert admin_client.post("/admin/monitoring/alertrule/add/", form).status_code == 302
    assert AlertRule.objects.get().condition == "ads.calibration_ratio (all) outside 0.8-1.25 over 1 day"


def test_an_operator_resolves_an_alert_in_the_admin(admin_client):
    from monitoring.services import raise_alert

    alert = raise_alert(title="retraining held back (training job 7)", message="kept what serves")
    response = admin_client.post("/admin/monitoring/alert/", {"action": "resolve", "_selected_action": [alert.pk]})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.resolved_at is not None


def test_a_firing_alert_stays_open_while_its_window_has_too_few_observations():
    rule = AlertRule.objects.create(name="zero results", metric="search.zero_result_rate", threshold=0.15, min_count=10)
    searches(20, zero=10)
    services.check_rules()
    SearchQueryLog.objects.all().delete()
    searches(5, zero=0)  # a quiet hour: 5 searches, none without results
    assert services.check_rules() == {"fired": 0, "resolved": 0}
    assert Alert.objects.get(rule=rule).state == "firing"


def test_a_refresh_is_skipped_while_another_holds_the_lock():
    from django.db import connections

    other = connections.create_connection("default")
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [services.REFRESH_LOCK])
        try:
            assert services.refresh() == {"skipped": 1}
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [services.REFRESH_LOCK])
    other.close()
    assert "rows" in services.refresh()
