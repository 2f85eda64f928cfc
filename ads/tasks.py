"""Celery tasks of the ads app: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from ads import services


@shared_task(name="ads.train_ctr")
def train_ctr(version_id: int) -> None:
    """Train one queued pCTR model version (sent to the ``training`` queue by the service)."""
    services.train_ctr_model(version_id=version_id)
