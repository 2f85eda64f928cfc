"""Serializers of the monitoring API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from backbone.models import Experiment
from monitoring.experiments import report
from monitoring.models import Alert, MetricValue


class MetricDefinitionSerializer(serializers.Serializer):
    name = serializers.CharField()
    app = serializers.CharField()
    unit = serializers.CharField()
    help = serializers.CharField()
    dimension = serializers.CharField(help_text="The label of the metric's dimension ('' if it has none).")
    versioned = serializers.BooleanField(help_text="Values per model version (else only version 'all').")
    totalled = serializers.BooleanField(help_text="A value with dimension '' (the total over the dimension).")


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


class ArmSerializer(serializers.Serializer):
    arm = serializers.ChoiceField(choices=["A", "B"])
    model = serializers.CharField()
    n = serializers.IntegerField(help_text="Observations (e.g. items shown) since the test started.")
    rate = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(help_text="95% interval (Wilson).")
    high = serializers.FloatField()


class DifferenceSerializer(serializers.Serializer):
    value = serializers.FloatField(help_text="Rate of B minus rate of A.")
    low = serializers.FloatField(help_text="95% interval (normal approximation).")
    high = serializers.FloatField()


class ExperimentReportSerializer(serializers.Serializer):
    metric = serializers.CharField()
    arms = ArmSerializer(many=True)
    difference = DifferenceSerializer(allow_null=True)


class ExperimentSerializer(serializers.ModelSerializer):
    report = serializers.SerializerMethodField()

    class Meta:
        model = Experiment
        fields = ["id", "app", "control", "challenger", "share", "started_at", "ended_at", "winner", "report"]
        read_only_fields = fields

    @extend_schema_field(ExperimentReportSerializer)
    def get_report(self, experiment: Experiment) -> dict:
        return ExperimentReportSerializer(report(experiment)).data
