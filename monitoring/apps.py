"""The monitoring app: online metrics of the served models, alert rules, and the /metrics endpoint."""

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from backbone import gate
        from monitoring import services

        gate.held_back.connect(services.alert_held_back, dispatch_uid="monitoring.alert_held_back")
