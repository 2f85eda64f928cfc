"""Aggregating the online metrics into ``MetricValue`` rows, and checking the alert rules.

Both run on a schedule (``monitoring.refresh``, every ``METRICS_REFRESH_SECONDS``): pages, the API
and ``/metrics`` only read the small aggregate table, never the raw logs.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from monitoring import metrics
from monitoring.models import Alert, AlertRule, MetricValue
from recommend.models import RecommendationLog

logger = logging.getLogger(__name__)
SPAN = {MetricValue.Granularity.HOUR: timedelta(hours=1), MetricValue.Granularity.DAY: timedelta(days=1)}


def bucket_start(moment: datetime, granularity: str) -> datetime:
    """The start (UTC) of the hour or day holding ``moment``."""
    moment = moment.astimezone(UTC)
    if granularity == MetricValue.Granularity.DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def compute_period(*, granularity: str, start: datetime) -> int:
    """(Re)compute every metric for the hour or day starting at ``start``; return the rows stored.

    Idempotent: the bucket's rows are replaced in one transaction, so computing it twice stores the
    same rows, and a reader never sees it half written.
    """
    start = bucket_start(start, granularity)
    end = start + SPAN[granularity]
    rows = [
        MetricValue(
            metric=metric.name, granularity=granularity, start=start, version=version[:100],
            dimension=dimension[:200], value=value, count=count,
        )
        for metric in metrics.METRICS.values()
        for version, dimension, value, count in metric.compute(start, end)
    ]  # fmt: skip
    with transaction.atomic():
        MetricValue.objects.filter(granularity=granularity, start=start).delete()
        MetricValue.objects.bulk_create(rows)
    return len(rows)


REFRESH_LOCK = 0x6D6F6E69  # PostgreSQL advisory lock: one refresh at a time across workers


def refresh(*, now: datetime | None = None) -> dict[str, int]:
    """Recompute the current and the previous hour and day (late events land in the previous one),
    then check the alert rules. Returns counts; ``{"skipped": 1}`` while another refresh runs (a
    second one would replace the same buckets and could fire the same alert twice)."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [REFRESH_LOCK])
        if not cursor.fetchone()[0]:
            logger.info("metrics refresh skipped: another one is running")
            return {"skipped": 1}
        try:
            stored = 0
            for granularity, span in SPAN.items():
                for moment in (now - span, now):
                    stored += compute_period(granularity=granularity, start=moment)
            return {"rows": stored, **prune(now=now), **check_rules(now=now)}
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [REFRESH_LOCK])


def prune(*, now: datetime) -> dict[str, int]:
    """Delete hourly metric rows older than ``METRICS_HOURLY_RETENTION_DAYS`` and recommendation logs older
    than ``RECOMMENDATION_LOG_RETENTION_DAYS`` (0: keep); return how many of each went."""
    pruned = {}
    for name, queryset, field, days in (
        ("pruned_hourly", MetricValue.objects.filter(granularity=MetricValue.Granularity.HOUR), "start",
         settings.METRICS_HOURLY_RETENTION_DAYS),
        ("pruned_rec_logs", RecommendationLog.objects.all(), "created_at", settings.RECOMMENDATION_LOG_RETENTION_DAYS),
    ):  # fmt: skip
        pruned[name] = queryset.filter(**{f"{field}__lt": now - timedelta(days=days)}).delete()[0] if days > 0 else 0
    return pruned


def backfill(*, since: datetime, until: datetime, granularity: str, progress=None) -> int:
    """Compute every bucket from ``since`` to ``until``; ``progress`` is called after each one."""
    start, stored = bucket_start(since, granularity), 0
    while start < until:
        stored += compute_period(granularity=granularity, start=start)
        start += SPAN[granularity]
        if progress:
            progress()
    return stored


def buckets_between(since: datetime, until: datetime, granularity: str) -> int:
    span = SPAN[granularity]
    return max(0, -(-(until - bucket_start(since, granularity)) // span))


# --- alerts -------------------------------------------------------------------------------------


def rule_value(rule: AlertRule, *, now: datetime) -> tuple[float, int] | None:
    """The rule's metric over its window ending ``now`` (computed from the logs, bounded by the
    window), for its version and dimension; None when nothing was observed."""
    start = now - timedelta(minutes=rule.window_minutes)
    for version, dimension, value, count in metrics.get(rule.metric).compute(start, now):
        if version == rule.version and dimension == rule.dimension:
            return value, count
    return None


def check_rules(*, now: datetime | None = None) -> dict[str, int]:
    """Fire, keep or resolve each active rule's alert; a new firing is sent (mail, webhook)."""
    now = now or timezone.now()
    fired = resolved = 0
    for rule in AlertRule.objects.filter(active=True):
        measured = rule_value(rule, now=now)
        breached = measured is not None and measured[1] >= rule.min_count and rule.breached(measured[0])
        open_alert = rule.alerts.filter(state=Alert.State.FIRING).first()
        if breached and open_alert is None:
            fire(rule, *measured)
            fired += 1
        elif breached:
            open_alert.last_value = measured[0]
            open_alert.save(update_fields=["last_value"])
        elif open_alert is not None and measured is not None and measured[1] >= rule.min_count:
            open_alert.state, open_alert.resolved_at = Alert.State.RESOLVED, now
            open_alert.last_value = measured[0]
            open_alert.save(update_fields=["state", "resolved_at", "last_value"])
            logger.info("alert %r resolved at %.4g", rule.name, measured[0])
            resolved += 1
    return {"fired": fired, "resolved": resolved}


def fire(rule: AlertRule, value: float, count: int) -> Alert:
    """Open an alert for ``rule`` and send it; a failed send is recorded on the alert, not raised."""
    message = f"{rule.name}: {rule.condition}; measured {value:.4g} over {count} observations."
    alert = Alert.objects.create(
        rule=rule, title=rule.name, value=value, last_value=value, count=count, message=message
    )
    return send(alert, emails=rule.emails, webhook_url=rule.webhook_url)


def raise_alert(*, title: str, message: str) -> Alert:
    """An alert without a rule (open until an operator resolves it), sent to ALERT_EMAILS and ALERT_WEBHOOK_URL."""
    alert = Alert.objects.create(title=title[:200], message=message)
    return send(alert, emails="", webhook_url=settings.ALERT_WEBHOOK_URL)


def alert_held_back(sender, *, job_id: int, verdict, **kwargs) -> None:
    """Receiver of ``backbone.gate.held_back``: a scheduled retraining kept the serving models."""
    raise_alert(
        title=f"retraining held back (training job {job_id})",
        message=f"Training job {job_id} kept the serving models: " + "; ".join(verdict.lines),
    )


def send(alert: Alert, *, emails: str, webhook_url: str) -> Alert:
    """Log the alert, mail it (``emails`` or ALERT_EMAILS) and post it to ``webhook_url``; record on
    the alert one line per channel saying what happened (a failed send is recorded, not raised)."""
    logger.warning("alert: %s", alert.message)
    outcome = []
    recipients = [a.strip() for a in (emails or settings.ALERT_EMAILS).split(",") if a.strip()]
    if recipients:
        try:
            send_mail(f"[alert] {alert.title}", alert.message, settings.DEFAULT_FROM_EMAIL, recipients)
            outcome.append(f"mail to {', '.join(recipients)}")
        except Exception as exc:  # noqa: BLE001 (any mail failure is reported, never fatal)
            logger.exception("alert mail for %r failed", alert.title)
            outcome.append(f"mail failed: {exc}")
    if webhook_url:
        outcome.append(post_webhook(webhook_url, alert))
    alert.notified = outcome
    alert.save(update_fields=["notified"])
    return alert


def post_webhook(url: str, alert: Alert) -> str:
    """POST the alert as JSON (timeout ALERT_WEBHOOK_TIMEOUT); a line saying how it went."""
    rule = alert.rule
    body = {
        "title": alert.title, "rule": rule.name if rule else None, "metric": rule.metric if rule else None,
        "condition": rule.condition if rule else None, "value": alert.value, "count": alert.count,
        "message": alert.message, "fired_at": alert.fired_at.isoformat(),
    }  # fmt: skip
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.ALERT_WEBHOOK_TIMEOUT) as response:
            return f"webhook {url}: {response.status}"
    except Exception as exc:  # noqa: BLE001 (an unreachable webhook must not stop the other rules)
        logger.warning("alert webhook %s failed: %s", url, exc)
        return f"webhook {url} failed: {exc}"
