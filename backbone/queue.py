"""Enqueue Celery tasks by name, after the current transaction commits.

Services never import ``tasks.py`` (no services <-> tasks cycle, as Zulip's
``queue_event_on_commit``): the queue a task goes to comes from ``CELERY_TASK_ROUTES``.
"""

from __future__ import annotations

from django.db import transaction


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
