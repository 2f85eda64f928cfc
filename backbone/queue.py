"""Enqueue Celery tasks by name, after the current transaction commits.

Services never import ``tasks.py`` (no services <-> tasks cycle, as Zulip's
``queue_event_on_commit``): the queue a task goes to comes from ``CELERY_TASK_ROUTES``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


def enqueue_on_commit(task_name: str, *args) -> None:
    """Send ``task_name(*args)`` to its queue once the surrounding transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send(task_name, *args))


def send(task_name: str, *args) -> None:
    """Send ``task_name(*args)`` now (run in this process when ``CELERY_TASK_ALWAYS_EAGER`` is on)."""
    from config.celery import app

    if app.conf.task_always_eager:
        app.tasks[task_name].apply(args=list(args))
    else:
        app.send_task(task_name, args=list(args))


@contextmanager
def one_at_a_time(name: str) -> Iterator[None]:
    """Run the block while holding PostgreSQL's session advisory lock for ``name`` (waiting for it).

    For idempotent tasks that compute "what is missing": a second copy enqueued meanwhile (two
    imports, two workers) waits, then finds the first one's rows and computes only the rest.
    """
    key = zlib.crc32(name.encode()) & 0x7FFFFFFF
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
