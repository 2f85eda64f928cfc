"""A/B tests of model versions (``backbone.models.Experiment``): the active row of an app's model and a
challenger row serve side by side, each customer always in the same arm.

An app opts in by naming the class of the row it serves (``AppTrainer.model``) and asking
:func:`choose` which row serves a customer; its answers say the arm, and its logs carry the row's
name, so the online metrics (``monitoring``) are per arm (per model version).
"""

from __future__ import annotations

import threading
import time
import zlib

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from backbone import lifecycle, registry
from backbone.models import Experiment, TrainedModel

CHECK_SECONDS = 5.0  # a process re-reads the running experiments this often
_LOCK = threading.Lock()
_CACHE: dict[str, tuple[float, Experiment | None, TrainedModel | None]] = {}


def model_of(app: str) -> type[TrainedModel] | None:
    """The class of the row ``app`` serves, if the app can be A/B tested."""
    trainer = registry.APP_TRAINERS.get(app)
    return trainer.model if trainer is not None else None


def validate(experiment: Experiment) -> None:
    """ValidationError (per field) unless the app can be tested, the share is within 0-100% and the
    challenger is a servable row other than the active one; fills in ``control``."""
    model = model_of(experiment.app)
    if model is None:
        testable = sorted(app for app, t in registry.APP_TRAINERS.items() if t.model is not None)
        raise ValidationError({"app": f"{experiment.app!r} cannot be A/B tested; one of {testable}."})
    if not 0 < experiment.share < 100:
        raise ValidationError({"share": "Give a percent strictly between 0 and 100."})
    row = model.objects.filter(name=experiment.challenger).first()
    active = lifecycle.active(model)
    if row is None or row.state not in (model.State.READY, model.State.RETIRED):
        raise ValidationError(
            {"challenger": f"No ready or retired {model._meta.verbose_name} named {experiment.challenger!r}."}
        )
    if active is None or active.pk == row.pk:
        raise ValidationError({"challenger": "The challenger must differ from an active row to compare it with."})
    if getattr(model, "SAME_BACKBONE", False) and row.backbone_version_id != active.backbone_version_id:
        raise ValidationError({"challenger": "The challenger must be trained for the backbone version that serves."})
    if experiment.pk is None and Experiment.objects.filter(app=experiment.app, ended_at__isnull=True).exists():
        raise ValidationError({"app": f"An experiment of {experiment.app} is running already: end it first."})
    experiment.control = active.name


def arm(experiment: Experiment, unit: str) -> str | None:
    """ "B" for ``share`` percent of the units (customers; sessions for search), by a stable hash of the
    experiment and the unit, else "A"; None without a unit (not in the test: the control serves it)."""
    if not unit:
        return None
    return "B" if zlib.crc32(f"{experiment.pk}:{unit}".encode()) % 10_000 < experiment.share * 100 else "A"


def running(app: str) -> tuple[Experiment | None, TrainedModel | None]:
    """The app's running experiment and its challenger row (re-read every CHECK_SECONDS); (None, None)
    when its control no longer serves (the app was retrained or rolled back: the test is void)."""
    now = time.monotonic()
    with _LOCK:
        cached = _CACHE.get(app)
        if cached is not None and now - cached[0] < CHECK_SECONDS:
            return cached[1], cached[2]
    experiment = Experiment.objects.filter(app=app, ended_at__isnull=True).first()
    challenger = None
    if experiment is not None and not void(experiment):
        challenger = model_of(app).objects.filter(name=experiment.challenger).first()
    if challenger is None:
        experiment = None
    with _LOCK:
        _CACHE[app] = (now, experiment, challenger)
    return experiment, challenger


def void(experiment: Experiment) -> str:
    """Why a running test no longer compares what it started with ("" while it does)."""
    active = lifecycle.active(model_of(experiment.app))
    if active is None or active.name != experiment.control:
        return f"its control {experiment.control} no longer serves"
    return ""


def choose(app: str, unit: str) -> tuple[TrainedModel | None, str | None]:
    """(the challenger row when ``unit`` is in arm B, else None: the active row serves; the arm, None
    when no experiment runs or the unit is not in it)."""
    experiment, challenger = running(app)
    if experiment is None:
        return None, None
    chosen = arm(experiment, unit)
    return (challenger if chosen == "B" else None), chosen


def reset_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def end(experiment: Experiment, *, promote: bool) -> Experiment:
    """End a running experiment: promote the challenger (activated: it serves everyone) or keep the control.
    Promoting a void test (its control no longer serves) is a ValidationError: it may be stopped."""
    reason = void(experiment) if promote else ""
    if reason:
        raise ValidationError(f"Not promoted: {reason}; stop this test and start a new one.")
    with transaction.atomic():
        if promote:
            row = model_of(experiment.app).objects.get(name=experiment.challenger)
            lifecycle.activate(type(row), pk=row.pk)
        experiment.ended_at = timezone.now()
        experiment.winner = Experiment.Winner.CHALLENGER if promote else Experiment.Winner.CONTROL
        experiment.save(update_fields=["ended_at", "winner"])
    reset_cache()
    return experiment
