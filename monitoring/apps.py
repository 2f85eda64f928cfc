"""The monitoring app: online metrics of the served models, alert rules, and the /metrics endpoint."""

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"
