"""beat's scheduler: django-celery-beat's database scheduler, reconnecting after a failed send.

Imported by beat once Django is set up (``app.conf.beat_scheduler``), never by the Celery app module.
"""

from __future__ import annotations

import contextlib

from celery.beat import SchedulingError
from django_celery_beat.schedulers import DatabaseScheduler


class ReconnectingScheduler(DatabaseScheduler):
    """The schedule in the database (``settings.CELERY_BEAT_SCHEDULE`` plus what operators add, e.g.
    retraining schedules), and a new broker connection after a failed send.

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
