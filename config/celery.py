"""The Celery app: queues ``default`` and ``training``, JSON only, state in the database."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("training"))


def _embedded_broker_defaults() -> dict:
    """Broker on the embedded PostgreSQL, evaluated only when Celery reads its config."""
    from django.conf import settings

    if settings.CELERY_BROKER_URL:
        return {}
    if settings.DATABASE_URL:
        url = settings.DATABASE_URL.replace("postgres://", "postgresql://", 1)
    else:
        from config import embedded

        url = embedded.database_url(settings.STATE_DIR, settings.DATABASES["default"]["NAME"])
    return {"broker_url": "sqla+" + url.replace("postgresql://", "postgresql+psycopg://", 1)}


app.add_defaults(_embedded_broker_defaults)
app.autodiscover_tasks()
