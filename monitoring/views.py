"""Monitoring API (staff): metric definitions, aggregated values, alerts; and Prometheus' ``/metrics``."""

from __future__ import annotations

import hmac

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, renderers
from rest_framework.response import Response
from rest_framework.views import APIView

from backbone.models import Experiment
from catalog import throttles
from catalog.filtering import BlankableCharFilter, strict_filterset
from monitoring import exposition, metrics
from monitoring.models import Alert, MetricValue
from monitoring.serializers import (
    AlertSerializer,
    ExperimentSerializer,
    MetricDefinitionSerializer,
    MetricValueSerializer,
)


class MetricDefinitionsView(APIView):
    """The online metrics there are: name, app, unit, meaning, dimension."""

    @extend_schema(responses={200: MetricDefinitionSerializer(many=True)})
    def get(self, request):
        rows = [{**vars(m), "app": m.app} for m in metrics.METRICS.values()]
        return Response(MetricDefinitionSerializer(rows, many=True).data)


class MetricValueFilter(
    strict_filterset(
        MetricValue,
        {"metric": ["exact", "startswith"], "granularity": ["exact"], "version": ["exact"], "start": ["gte", "lt"]},
    )
):
    dimension = BlankableCharFilter(help_text="The dimension's value; sent empty: the totals over it.")


class MetricValuesView(generics.ListAPIView):
    """Hourly or daily values of the online metrics per model version (``all``: every version), newest
    first; computed on a schedule (``METRICS_REFRESH_SECONDS``), so reading them scans no logs."""

    queryset = MetricValue.objects.all()
    serializer_class = MetricValueSerializer
    filterset_class = MetricValueFilter


class AlertsView(generics.ListAPIView):
    """Alerts raised by the operator's rules, newest first."""

    queryset = Alert.objects.select_related("rule")
    serializer_class = AlertSerializer
    filterset_fields = ["state"]


class ExperimentsView(generics.ListAPIView):
    """A/B tests of model versions, newest first, each with its arms' online rate and 95% intervals."""

    queryset = Experiment.objects.all()
    serializer_class = ExperimentSerializer
    filterset_fields = ["app", "winner"]


class PrometheusRenderer(renderers.BaseRenderer):
    media_type = "text/plain"
    format = "prometheus"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data.encode() if isinstance(data, str) else renderers.JSONRenderer().render(data)


class ScrapeAccess(permissions.BasePermission):
    """Staff, or ``Authorization: Bearer <METRICS_TOKEN>`` when that setting is not empty."""

    def has_permission(self, request, view):
        header = request.headers.get("Authorization", "")
        token = settings.METRICS_TOKEN
        if token and header.startswith("Bearer "):
            given = header[len("Bearer ") :].strip().encode("utf-8", "surrogateescape")  # bytes: any header compares
            if hmac.compare_digest(given, token.encode()):
                return True
            throttles.refuse_if_locked(request)
            throttles.record_failure(request)  # a wrong token counts toward the lockout, as a wrong password does
            return False
        return bool(request.user and request.user.is_staff)


@extend_schema(exclude=True)  # Prometheus' text format, outside the versioned API
class PrometheusView(APIView):
    """The latest hourly and daily value of every online metric, in Prometheus' text format."""

    permission_classes = [ScrapeAccess]
    renderer_classes = [PrometheusRenderer]

    def get(self, request):
        return Response(exposition.render_latest())
