"""The online metrics in Prometheus' text format (``GET /metrics``), read from the aggregate table.

Each metric is a gauge ``commerce_<app>_<what>`` with the value of the current hour and of the
current day so far (label ``period``), per model ``version`` (and per dimension, e.g. ``source``),
beside ``..._observations`` (what the value stands on). Scrape it as often as you like: it reads
two buckets of ``MetricValue``, never the logs.
"""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Max
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from monitoring import metrics
from monitoring.models import MetricValue
from monitoring.services import SPAN, bucket_start


def prometheus_name(metric: str) -> str:
    return "commerce_" + metric.replace(".", "_")


class CurrentValues:
    """A prometheus_client collector of the current hour's and day's rows."""

    def collect(self):
        now = timezone.now()
        rows = defaultdict(list)
        for granularity in SPAN:
            for row in MetricValue.objects.filter(granularity=granularity, start=bucket_start(now, granularity)):
                rows[row.metric].append(row)
        for name, metric in metrics.METRICS.items():
            labels = ["period", "version"] + ([metric.dimension] if metric.dimension else [])
            value = GaugeMetricFamily(prometheus_name(name), f"{metric.help} ({metric.unit})", labels=labels)
            count = GaugeMetricFamily(prometheus_name(name) + "_observations", f"What {name} stands on.", labels=labels)
            for row in rows[name]:
                key = [row.granularity, row.version] + ([row.dimension or "all"] if metric.dimension else [])
                if metric.dimension or not row.dimension:
                    value.add_metric(key, row.value)
                    count.add_metric(key, row.count)
            yield value
            yield count
        computed = MetricValue.objects.aggregate(at=Max("computed_at"))["at"]
        yield GaugeMetricFamily(
            "commerce_metrics_computed_timestamp_seconds",
            "When the aggregates were last computed (Unix time).",
            value=computed.timestamp() if computed else 0.0,
        )


def render_latest() -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CurrentValues())
    return generate_latest(registry).decode()
