"""How the arms of an A/B test do online: each arm's rate since the test started, with 95% intervals,
read from the hourly aggregate rows of the app's per-arm metric (only traffic assigned to an arm:
answers and logs carry it; a request without a customer or session is in no arm)."""

from __future__ import annotations

import math

from django.db.models import F, FloatField, Sum
from django.utils import timezone

from backbone.models import Experiment
from monitoring.metrics import ALL
from monitoring.models import MetricValue
from monitoring.services import bucket_start

# the rate each app's test is judged by: an online metric per arm (dimension "arm"), with counts
RATE = {"recommend": "recommend.ab_ctr", "ads": "ads.ab_ctr", "search": "search.ab_ctr"}
Z = 1.96  # 95%


def wilson(successes: float, n: int) -> tuple[float, float]:
    """Wilson's 95% interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def report(experiment: Experiment) -> dict:
    """Per arm (A: the control, B: the challenger) the rate, its observations and 95% interval, and the
    difference B - A with its 95% interval (normal approximation), since the test's first hour."""
    metric = RATE[experiment.app]
    rows = MetricValue.objects.filter(
        metric=metric, granularity=MetricValue.Granularity.HOUR, version=ALL,
        start__gte=bucket_start(experiment.started_at, "hour"), start__lte=experiment.ended_at or timezone.now(),
    )  # fmt: skip
    arms = []
    for arm, model in (("A", experiment.control), ("B", experiment.challenger)):
        totals = rows.filter(dimension=arm).aggregate(
            successes=Sum(F("value") * F("count"), output_field=FloatField()), n=Sum("count")
        )
        n, successes = totals["n"] or 0, totals["successes"] or 0.0
        low, high = wilson(successes, n)
        arms.append(
            {"arm": arm, "model": model, "n": n, "rate": successes / n if n else None, "low": low, "high": high}
        )
    a, b = arms
    difference = None
    if a["n"] and b["n"]:
        se = math.sqrt(a["rate"] * (1 - a["rate"]) / a["n"] + b["rate"] * (1 - b["rate"]) / b["n"])
        delta = b["rate"] - a["rate"]
        difference = {"value": delta, "low": delta - Z * se, "high": delta + Z * se}
    return {"metric": metric, "arms": arms, "difference": difference}
