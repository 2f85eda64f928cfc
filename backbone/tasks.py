"""Celery tasks of the backbone: thin wrappers that take ids and call one service."""

from __future__ import annotations

import logging

from celery import shared_task

from backbone import services

logger = logging.getLogger(__name__)


@shared_task(name="backbone.run_training_job", acks_late=False)
def run_training_job(job_id: int) -> None:
    services.run_training_job(job_id=job_id)


@shared_task(name="backbone.embed_version")
def embed_version(version_id: int) -> None:
    services.embed_version(version_id=version_id)


@shared_task(name="backbone.reap_stale_jobs")
def reap_stale_jobs() -> int:
    return services.reap_stale_jobs()
