"""Celery tasks of the chatbot: thin wrappers that take ids and call one service.

``chatbot.refresh_prototypes`` is what makes intents answer before (and between) trainings: a
small task that belongs on the fast ``default`` queue, never behind bulk embedding work.
"""

from __future__ import annotations

import logging

from celery import shared_task

from backbone.models import ModelVersion
from chatbot import services

logger = logging.getLogger(__name__)


@shared_task(name="chatbot.refresh_prototypes")
def refresh_prototypes(version_id: int) -> int:
    """Compute the missing intent prototypes on backbone version ``version_id``."""
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        logger.warning("chatbot.refresh_prototypes: version %s is gone", version_id)
        return 0
    return services.refresh_prototypes(version=version)
