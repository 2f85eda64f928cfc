"""Online metrics aggregated per hour and per day, the operator's alert rules, and the alerts they raised."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from monitoring import metrics


class MetricValue(models.Model):
    """One metric over one hour or day (UTC) for one model version (``all``: every version) and one
    dimension value (``""``: the total). Written only by ``monitoring.services.compute_period``."""

    class Granularity(models.TextChoices):
        HOUR = "hour"
        DAY = "day"

    metric = models.CharField(max_length=64, db_index=True)
    granularity = models.CharField(max_length=4, choices=Granularity.choices)
    start = models.DateTimeField(help_text="Start of the hour or day (UTC).")
    version = models.CharField(max_length=100, default=metrics.ALL, help_text="Model version, or 'all'.")
    dimension = models.CharField(max_length=200, blank=True, help_text="e.g. the source or campaign; '' = total.")
    value = models.FloatField()
    count = models.PositiveIntegerField(help_text="Observations behind the value (searches, items, messages).")
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-start", "metric", "version", "dimension"]
        constraints = [
            models.UniqueConstraint(
                fields=["metric", "granularity", "start", "version", "dimension"], name="one_metric_value_per_bucket"
            )
        ]
        indexes = [models.Index(fields=["granularity", "-start"], name="metric_value_recent")]

    def __str__(self) -> str:
        return f"{self.metric} {self.granularity} {self.start:%Y-%m-%d %H:%M} {self.version}: {self.value:.4g}"


class AlertRule(models.Model):
    """ "Metric <comparison> threshold over the last window", checked after every metrics refresh.

    Ratios are fractions (15% is 0.15); latencies are milliseconds. A window with fewer than
    ``min_count`` observations (e.g. searches) is not judged.
    """

    class Comparison(models.TextChoices):
        ABOVE = "above", "above threshold"
        BELOW = "below", "below threshold"
        OUTSIDE = "outside", "outside threshold-upper"

    class Window(models.IntegerChoices):
        HOUR = 60, "1 hour"
        SIX_HOURS = 360, "6 hours"
        DAY = 1440, "1 day"
        WEEK = 10080, "7 days"

    name = models.CharField(max_length=200, unique=True)
    metric = models.CharField(
        max_length=64, help_text="One of monitoring.metrics.METRICS (GET /api/v1/metrics/definitions)."
    )
    version = models.CharField(max_length=100, default=metrics.ALL, help_text="A model version, or 'all'.")
    dimension = models.CharField(max_length=200, blank=True, help_text="e.g. a source or campaign id; '' = total.")
    comparison = models.CharField(max_length=8, choices=Comparison.choices, default=Comparison.ABOVE)
    threshold = models.FloatField()
    upper = models.FloatField(null=True, blank=True, help_text="Upper bound (only for 'outside').")
    window_minutes = models.PositiveIntegerField(choices=Window.choices, default=Window.HOUR)
    min_count = models.PositiveIntegerField(default=20, help_text="Observations needed before judging.")
    emails = models.CharField(max_length=500, blank=True, help_text="Comma-separated; empty = settings.ALERT_EMAILS.")
    webhook_url = models.URLField(blank=True, help_text="Receives a JSON POST when the alert fires.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """A known metric, and an upper bound above the threshold exactly when the comparison needs one."""
        if self.metric not in metrics.METRICS:
            raise ValidationError({"metric": f"Unknown metric {self.metric!r}."})
        if self.comparison == self.Comparison.OUTSIDE:
            if self.upper is None or self.upper <= self.threshold:
                raise ValidationError({"upper": "'outside' needs an upper bound above the threshold."})
        elif self.upper is not None:
            raise ValidationError({"upper": "Only 'outside' takes an upper bound."})
        metric = metrics.get(self.metric)
        if self.dimension and not metric.dimension:
            raise ValidationError({"dimension": f"{self.metric} has no dimension."})
        if not self.dimension and not metric.totalled:
            raise ValidationError({"dimension": f"{self.metric} has no total: name one {metric.dimension}."})
        if self.version != metrics.ALL and not metric.versioned:
            raise ValidationError({"version": f"{self.metric} is measured over all versions only: 'all'."})

    def breached(self, value: float) -> bool:
        if self.comparison == self.Comparison.ABOVE:
            return value > self.threshold
        if self.comparison == self.Comparison.BELOW:
            return value < self.threshold
        return not self.threshold <= value <= self.upper

    @property
    def condition(self) -> str:
        if self.comparison == self.Comparison.OUTSIDE:
            bound = f"outside {self.threshold:g}-{self.upper:g}"
        else:
            bound = f"{'>' if self.comparison == self.Comparison.ABOVE else '<'} {self.threshold:g}"
        scope = f" [{self.dimension}]" if self.dimension else ""
        return f"{self.metric}{scope} ({self.version}) {bound} over {self.get_window_minutes_display()}"


class Alert(models.Model):
    """One firing of a rule (open while the rule stays breached, resolved when it no longer is), or an
    event worth an operator's eye without a rule (a scheduled retraining that kept the serving
    models), open until an operator resolves it."""

    class State(models.TextChoices):
        FIRING = "firing"
        RESOLVED = "resolved"

    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    title = models.CharField(max_length=200, default="", help_text="The rule's name, or what happened.")
    state = models.CharField(max_length=8, choices=State.choices, default=State.FIRING, db_index=True)
    value = models.FloatField(null=True, blank=True, help_text="The metric when the alert fired.")
    last_value = models.FloatField(null=True, blank=True, help_text="The metric at the latest check.")
    count = models.PositiveIntegerField(default=0, help_text="Observations behind the value.")
    message = models.TextField()
    notified = models.JSONField(default=list, blank=True, help_text="Where it was sent, or why not.")
    fired_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule"], condition=models.Q(state="firing"), name="one_firing_alert_per_rule"
            )
        ]

    def __str__(self) -> str:
        return f"{self.title}: {self.state}"
