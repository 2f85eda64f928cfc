"""Celery tasks of the recommend app."""

from __future__ import annotations

from celery import shared_task

from recommend import services


@shared_task(name="recommend.train")
def train(model_id: int) -> None:
    """Train one queued recommender (a second delivery finds it claimed and returns)."""
    services.train_model(model_id=model_id)
