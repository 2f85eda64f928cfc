"""``/api/v1/health``: checks the database, the broker and the loaded model, and says what is still
being prepared (training jobs, embeddings) with progress."""

from __future__ import annotations

import logging
import time

from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger(__name__)


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if row is None:
        raise RuntimeError("the 'vector' extension is not installed in this database")
    return {"vector": row[0]}


def check_broker() -> dict:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
        return {"transport": conn.transport.driver_type}


def check_model() -> dict:
    from backbone.services import active_serving_encoder

    version, encoder = active_serving_encoder()
    vector = encoder.encode(["health check"])
    return {"version": version.name, "dim": int(vector.shape[1]), "device": str(encoder.device)}


def check_preparing() -> dict:
    """Not a failure: what is still being prepared (training, embedding), so that a fresh platform's
    first answers (out of scope, unranked) are explained."""
    from backbone.services import preparing

    work = preparing()
    return {"ready": not work, "work": work}


CHECKS = {"database": check_database, "broker": check_broker, "model": check_model, "preparing": check_preparing}


class HealthView(APIView):
    """200 when every check passes, 503 with the failing check's error otherwise."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        responses={
            200: inline_serializer("Health", {"status": serializers.CharField(), "checks": serializers.DictField()}),
            503: inline_serializer(
                "HealthFailed", {"status": serializers.CharField(), "checks": serializers.DictField()}
            ),
        }
    )
    def get(self, request):
        results, healthy = {}, True
        for name, check in CHECKS.items():
            started = time.monotonic()
            try:
                results[name] = {"ok": True, **check()}
            except Exception as exc:  # a health check reports failures, it does not raise them
                logger.warning("health check %s failed: %s", name, exc)
                results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                healthy = False
            results[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
        return Response({"status": "ok" if healthy else "failing", "checks": results}, status=200 if healthy else 503)
