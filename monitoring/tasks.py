"""Celery task of the online metrics: a thin wrapper of ``monitoring.services.refresh``."""

from __future__ import annotations

from celery import shared_task

from monitoring import services


@shared_task(name="monitoring.refresh")
def refresh() -> dict[str, int]:
    """Recompute the current and previous hour and day, then check the alert rules (idempotent)."""
    return services.refresh()
