"""The Celery app: queues ``default``, ``bulk`` and ``training``, JSON only, state in the database."""

from __future__ import annotations

import contextlib
import os

from celery import Celery
from celery.beat import PersistentScheduler, SchedulingError
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("bulk"), Queue("training"))
app.conf.beat_scheduler = "config.celery:ReconnectingScheduler"


class ReconnectingScheduler(PersistentScheduler):
    """beat's scheduler (schedule kept in the ``--schedule`` file), reconnecting after a failed send.

    beat caches one producer for its whole life. When a send fails while the broker is down (our
    PostgreSQL restarting, or Redis), kombu leaves that producer on a closed channel and every later
    send fails with "channel disconnected", forever. Dropping the producer and its connection
    makes the next due entry open new ones.
    """

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        try:
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        except SchedulingError:
            self.__dict__.pop("producer", None)  # cached properties: recreated on next access
            connection = self.__dict__.pop("connection", None)
            if connection is not None:
                with contextlib.suppress(Exception):  # a broken connection may fail to close: dropped anyway
                    connection.release()
            raise


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
