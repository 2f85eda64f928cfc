"""Celery tasks of the backbone: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from backbone import jobs, services


@shared_task(name="backbone.run_training_job", acks_late=False)
def run_training_job(job_id: int) -> None:
    """Run one training job; a job that fails is reported as a failed Celery task too."""
    job = jobs.run_training_job(job_id=job_id)
    if job is not None and job.status == job.Status.FAILED:
        raise RuntimeError(f"training job {job_id} failed: {job.error}")


@shared_task(name="backbone.embed_version")
def embed_version(version_id: int) -> None:
    services.embed_version(version_id=version_id)


@shared_task(name="backbone.reap_stale_jobs")
def reap_stale_jobs() -> int:
    return jobs.reap_stale_jobs()


@shared_task(name="backbone.scheduled_training")
def scheduled_training(app: str) -> int | None:
    """A retraining schedule's run (sent by beat): a gated training job of ``app``; its id, or None
    when the schedule is gone or disabled or the app has nothing to train on."""
    return services.start_scheduled_training(app=app)
