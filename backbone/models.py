"""The lifecycle every trained artifact shares, model versions of the shared backbone, and the
training jobs that produce them."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q

from backbone import registry, schedules


class TrainedModel(models.Model):
    """One trained artifact (a folder under ``MODELS_DIR``) with the lifecycle every app shares:
    queued -> training -> ready -> (activating ->) active -> retired, or failed at any step.

    At most one row per concrete model is active; :mod:`backbone.lifecycle` moves rows between
    states. Concrete models add what only they need (a backbone version, counts).
    """

    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        TRAINING = "training", "training"
        READY = "ready", "ready"
        ACTIVATING = "activating", "activating"
        ACTIVE = "active", "active"
        RETIRED = "retired", "retired"
        FAILED = "failed", "failed"

    SERVABLE = (State.READY, State.ACTIVE, State.RETIRED)

    name = models.CharField(max_length=100, unique=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED, db_index=True)
    path = models.CharField(max_length=500, blank=True, help_text="Folder with the weights, config.json, metrics.json.")
    parameters = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    training_job = models.ForeignKey(
        "backbone.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["state"], condition=Q(state="active"), name="%(app_label)s_%(class)s_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


class ModelVersion(TrainedModel):
    """A folder of backbone weights (+ task heads); exactly one version serves at a time.

    Activating re-embeds every registered index with it (state ``activating``) before it serves.
    """

    base = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    tasks = models.JSONField(default=list, blank=True, help_text="Names of the task heads in this version.")
    activation_progress = models.FloatField(default=0.0)

    class Meta(TrainedModel.Meta):
        pass


class TrainingJob(models.Model):
    """One run of ``manage.py train`` (or the admin's Retrain, or the API's): executed by a worker on the
    ``training`` queue; ``parameters`` holds its ``apps``, backbone ``tasks`` and training options."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)
    metrics = models.JSONField(default=dict, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker running it")
    result_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_jobs"
    )
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class RetrainingSchedule(models.Model):
    """When one app is retrained on its own (cron, UTC), kept in django-celery-beat's database
    scheduler as a PeriodicTask (``backbone.schedules``). A scheduled run trains as ``manage.py
    train APP`` does, but activates only what its validation gate passes (``backbone.gate``)."""

    app = models.CharField(max_length=20, unique=True, help_text="search, recommend, chatbot or ads.")
    cron = models.CharField(
        max_length=100, default="0 3 * * *", help_text="minute hour day-of-month month day-of-week (UTC)."
    )
    enabled = models.BooleanField(default=True)
    tolerance = models.FloatField(
        default=0.0, help_text="How far below the serving model's validation score a new one may be and still serve."
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, editable=False, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["app"]

    def __str__(self) -> str:
        return f"retrain {self.app} at '{self.cron}'"

    def save(self, *args, **kwargs) -> None:
        """Save and keep its PeriodicTask in step (one transaction)."""
        with transaction.atomic():
            super().save(*args, **kwargs)
            schedules.sync(self)

    def delete(self, *args, **kwargs):
        with transaction.atomic():
            task = self.periodic_task
            result = super().delete(*args, **kwargs)
            if task is not None:
                task.delete()
            return result

    def clean(self) -> None:
        if self.app not in registry.APP_TRAINERS:
            raise ValidationError({"app": f"Unknown app {self.app!r}; one of {sorted(registry.APP_TRAINERS)}."})
        try:
            schedules.parse_cron(self.cron)
        except ValueError as exc:
            raise ValidationError({"cron": str(exc)}) from None
        if self.tolerance < 0:
            raise ValidationError({"tolerance": "Must be 0 or more."})


class Experiment(models.Model):
    """An A/B test of one app's model: the active row (arm A, ``control``) against a ready
    ``challenger`` row (arm B) for ``share`` percent of the customers, split by a stable hash
    (``backbone.experiments``, which validates one before it starts). At most one runs per app; it
    ends when an operator promotes the challenger (activated) or stops it (the control keeps serving)."""

    class Winner(models.TextChoices):
        CONTROL = "A", "A (control kept)"
        CHALLENGER = "B", "B (challenger promoted)"

    app = models.CharField(max_length=20, help_text="recommend or ads.")
    challenger = models.CharField(max_length=100, help_text="Name of a ready (or retired) row of the app's model.")
    control = models.CharField(max_length=100, blank=True, editable=False, help_text="The active row when it started.")
    share = models.FloatField(default=50.0, help_text="Percent of customers served by the challenger (0-100).")
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True, editable=False)
    winner = models.CharField(max_length=1, choices=Winner.choices, blank=True, editable=False)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["app"], condition=Q(ended_at__isnull=True), name="one_running_experiment_per_app"
            )
        ]

    def __str__(self) -> str:
        return f"{self.app}: {self.control or '?'} (A) vs {self.challenger} (B), {self.share:g}% to B"
