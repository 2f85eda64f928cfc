"""Retraining schedules in django-celery-beat's database scheduler: one PeriodicTask per app.

beat (``config.beat.ReconnectingScheduler``, a DatabaseScheduler) reads the PeriodicTask rows, so
a schedule saved in the admin runs without restarting anything.
"""

from __future__ import annotations

import json

from celery.schedules import crontab
from django_celery_beat.models import CrontabSchedule, PeriodicTask

TASK = "backbone.scheduled_training"
FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def parse_cron(text: str) -> dict[str, str]:
    """The five fields of a cron line ("0 3 * * *"); ValueError naming what is wrong."""
    parts = text.split()
    if len(parts) != len(FIELDS):
        raise ValueError(f"Give five fields ({' '.join(FIELDS)}), e.g. '0 3 * * *'; got {len(parts)}.")
    fields = dict(zip(FIELDS, parts, strict=True))
    try:
        crontab(**fields)  # celery expands every field: an hour of 25 or a '*/0' is a ValueError
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Not a valid schedule: {exc}") from None
    return fields


def sync(schedule) -> PeriodicTask:
    """Create or update the PeriodicTask of a RetrainingSchedule (and link it)."""
    cron, _ = CrontabSchedule.objects.get_or_create(**parse_cron(schedule.cron), timezone="UTC")
    task, _ = PeriodicTask.objects.update_or_create(
        name=f"retrain {schedule.app}",
        defaults={"task": TASK, "args": json.dumps([schedule.app]), "crontab": cron, "enabled": schedule.enabled,
                  "queue": "default", "description": "RetrainingSchedule (backbone admin)"},
    )  # fmt: skip
    if schedule.periodic_task_id != task.pk:
        type(schedule).objects.filter(pk=schedule.pk).update(periodic_task=task)
        schedule.periodic_task = task
    return task
