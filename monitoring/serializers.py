"""Serializers of the monitoring API."""

from __future__ import annotations

from rest_framework import serializers

from monitoring.models import Alert, MetricValue


class MetricDefinitionSerializer(serializers.Serializer):
    name = serializers.CharField()
    app = serializers.CharField()
    unit = serializers.CharField()
    help = serializers.CharField()
    dimension = serializers.CharField(help_text="The label of the metric's dimension ('' if it has none).")


class MetricValueSerializer(serializers.ModelSerializer):
    class Meta:
        model = MetricValue
        fields = ["metric", "granularity", "start", "version", "dimension", "value", "count", "computed_at"]
        read_only_fields = fields


class AlertSerializer(serializers.ModelSerializer):
    rule = serializers.CharField(source="rule.name", allow_null=True, default=None)
    condition = serializers.CharField(source="rule.condition", allow_null=True, default=None)

    class Meta:
        model = Alert
        fields = ["id", "title", "rule", "condition", "state", "value", "last_value", "count", "message", "notified",
                  "fired_at", "resolved_at"]  # fmt: skip
        read_only_fields = fields
