"""Model versions of the shared backbone and the training jobs that produce them."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """A folder of backbone weights (+ task heads); exactly one version serves at a time."""

    class State(models.TextChoices):
        READY = "ready", "ready"
        ACTIVATING = "activating", "activating (re-embedding)"
        ACTIVE = "active", "active"
        RETIRED = "retired", "retired"
        FAILED = "failed", "activation failed"

    name = models.CharField(max_length=100, unique=True)
    path = models.CharField(
        max_length=500, help_text="Folder with model.safetensors, config.json, heads/, metrics.json."
    )
    base = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    state = models.CharField(max_length=16, choices=State.choices, default=State.READY, db_index=True)
    metrics = models.JSONField(default=dict, blank=True)
    tasks = models.JSONField(default=list, blank=True, help_text="Names of the task heads in this version.")
    activation_progress = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["state"], condition=Q(state="active"), name="one_active_model_version"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


class TrainingJob(models.Model):
    """One training run, executed by a worker on the ``training`` queue."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    class Kind(models.TextChoices):
        MULTITASK = "multitask", "multi-task fine-tune of the backbone"

    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.MULTITASK)
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
        return f"#{self.pk} {self.kind} {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED
