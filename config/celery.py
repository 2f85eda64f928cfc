"""The Celery app: queues ``default``, ``bulk`` and ``training``, JSON only, state in the database."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("bulk"), Queue("training"))
app.conf.beat_scheduler = "config.beat:ReconnectingScheduler"  # the schedule in the database


def database_broker_url() -> str:
    """kombu's SQLAlchemy transport on the project's own database (no extra server needed)."""
    from django.conf import settings

    if settings.DATABASE_URL:
        url = settings.DATABASE_URL.replace("postgres://", "postgresql://", 1)
    else:
        from config import embedded

        url = embedded.database_url(settings.STATE_DIR, settings.DATABASES["default"]["NAME"])
    return "sqla+" + url.replace("postgresql://", "postgresql+psycopg://", 1)


def _broker_defaults() -> dict:
    """Evaluated only when Celery first reads its config, so importing this module starts nothing."""
    from django.conf import settings

    return {} if settings.CELERY_BROKER_URL else {"broker_url": database_broker_url()}


app.add_defaults(_broker_defaults)
app.autodiscover_tasks()
