"""The one lifecycle of every trained artifact (:class:`backbone.models.TrainedModel`).

Backbone versions, recommenders, pCTR models and search rankers move through the same states
with the same services: ``create_queued`` -> ``claim`` -> ``succeed`` or ``fail`` -> ``activate``
(retiring the previous one) -> ``roll_back``. Every transition is a conditional update, so two
workers never claim or activate the same row twice, and one advisory lock per model class
serialises activations: there is never more than one activation per app at a time.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any, TypeVar

from django.db import connection, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.dispatch import Signal
from django.utils import timezone

from backbone import errors
from backbone.models import TrainedModel

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=TrainedModel)
State = TrainedModel.State


# Sent (sender: the model class, pk) after an activation: a serving process that keeps the active
# row for a few seconds forgets it at once when the switch happened in that process.
activated = Signal()


class LifecycleError(errors.Conflict):
    """A transition that the row's state does not allow (activating a failed model, nothing to roll back to)."""


def version_name(prefix: str) -> str:
    """Return a new, sortable artifact name such as ``rec-20261201-140501-123456``."""
    return timezone.now().strftime(f"{prefix}-%Y%m%d-%H%M%S-%f")


def create_queued(model: type[M], *, prefix: str, parameters: dict[str, Any] | None = None, **fields) -> M:
    """Insert a queued row of ``model`` named ``<prefix>-<timestamp>``."""
    return model.objects.create(
        name=version_name(prefix), state=State.QUEUED, parameters=dict(parameters or {}), **fields
    )


def claim(model: type[TrainedModel], *, pk: int) -> bool:
    """Move a queued row to training; False when another worker has it (or it is gone)."""
    return bool(model.objects.filter(pk=pk, state=State.QUEUED).update(state=State.TRAINING))


def append_log(model: type[models.Model], *, pk: int, line: str) -> None:
    """Append one time-stamped line to the row's ``log`` (a trained model's or a training job's; one UPDATE, no read)."""
    stamp = timezone.now().strftime("%H:%M:%S")
    model.objects.filter(pk=pk).update(log=Concat(F("log"), Value(f"{stamp} {line}\n")))


def succeed(model: type[M], *, pk: int, path: str, metrics: dict[str, Any], **fields) -> M:
    """Mark a training row ready with its artifact folder and metrics; raise LifecycleError if it was not training."""
    changed = model.objects.filter(pk=pk, state=State.TRAINING).update(
        state=State.READY, path=path, metrics=metrics, finished_at=timezone.now(), **fields
    )
    if not changed:
        raise LifecycleError(f"{model.__name__} {pk} is not training any more")
    return model.objects.get(pk=pk)


def fail(model: type[M], *, pk: int, error: str) -> M:
    """Mark a row failed with ``error`` (what an operator reads in the admin); the active row keeps serving."""
    model.objects.filter(pk=pk).exclude(state__in=[State.ACTIVE, State.RETIRED]).update(
        state=State.FAILED, error=error, finished_at=timezone.now()
    )
    return model.objects.get(pk=pk)


def lock_activations(model: type[TrainedModel]) -> None:
    """Take the transaction-scoped advisory lock of ``model``'s activations (call inside a transaction)."""
    key = zlib.crc32(model._meta.label_lower.encode()) & 0x7FFFFFFF
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def activate(model: type[M], *, pk: int) -> M:
    """Make a ready, retired or active row the serving one and retire the previous, in one transaction.

    Raises LifecycleError for a row that never finished training. Serving processes notice the
    switch within their re-check interval (a couple of seconds).
    """
    with transaction.atomic():
        lock_activations(model)
        row = model.objects.select_for_update().get(pk=pk)
        if row.state not in (*TrainedModel.SERVABLE, State.ACTIVATING):
            raise LifecycleError(f"{row.name} is {row.state}; only a trained model can be activated")
        model.objects.filter(state=State.ACTIVE).exclude(pk=pk).update(state=State.RETIRED)
        model.objects.filter(pk=pk).update(state=State.ACTIVE, activated_at=timezone.now())
    activated.send(sender=model, pk=pk)
    logger.info("%s %s is now active", model._meta.verbose_name, row.name)
    return model.objects.get(pk=pk)


def active(model: type[M]) -> M | None:
    """Return the serving row of ``model``, or None."""
    return model.objects.filter(state=State.ACTIVE).first()


def previous(model: type[M]) -> M | None:
    """Return the row that served before the active one (the newest retired by activation time), or None."""
    newest = F("activated_at").desc(nulls_last=True)
    return model.objects.filter(state=State.RETIRED).order_by(newest, "-created_at", "-id").first()


def roll_back(model: type[M]) -> M:
    """Serve the previous row of ``model`` again (the active one is retired); raise LifecycleError if none."""
    row = previous(model)
    if row is None:
        raise LifecycleError(f"no earlier {model._meta.verbose_name} to roll back to")
    return activate(model, pk=row.pk)
