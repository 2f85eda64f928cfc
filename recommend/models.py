"""Recommendation models (trained artifacts and their metrics) and the operator's repeat policy.

Behaviour events live in ``catalog``; these rows only describe what was trained and how to serve.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from catalog.models import Customer


class RecommenderModel(models.Model):
    """One trained "for you"/"similar" model: a folder under ``MODELS_DIR/recommend/`` and its metrics.

    Exactly one model is active at a time; training runs as the Celery task ``recommend.train``.
    """

    class State(models.TextChoices):
        QUEUED = "queued"
        TRAINING = "training"
        READY = "ready"
        ACTIVE = "active"
        RETIRED = "retired"
        FAILED = "failed"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, default="hybrid")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED, db_index=True)
    path = models.CharField(max_length=500, blank=True, help_text="Folder with config.json, arrays.npz, items.json.")
    parameters = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Leave-last-out metrics measured at training.")
    n_items = models.PositiveIntegerField(default=0)
    n_customers = models.PositiveIntegerField(default=0)
    n_events = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    activate = models.BooleanField(default=True, help_text="Activate when training succeeds.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["state"], condition=Q(state="active"), name="one_active_recommender"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"

    def metric(self, name: str) -> float | None:
        """Return one overall metric of this model (e.g. ``ndcg@10``), or None."""
        value = (self.metrics or {}).get("model", {}).get(name)
        return value if isinstance(value, int | float) else None


class RepeatPolicy(models.Model):
    """Whether items already bought may be recommended again, per category (prefix of ``category_path``)."""

    category_path = models.CharField(
        max_length=500, unique=True, help_text="Category prefix, e.g. 'grocery' or 'grocery/coffee'; '' = all."
    )
    allow_repeats = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["category_path"]
        verbose_name_plural = "repeat policies"

    def __str__(self) -> str:
        return f"{self.category_path or '(all)'}: {'repeats allowed' if self.allow_repeats else 'no repeats'}"


class CustomerPreview(Customer):
    """A customer as the recommender sees them (admin page: history beside recommendations and reasons)."""

    class Meta:
        proxy = True
        verbose_name = "customer recommendation preview"
