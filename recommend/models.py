"""Recommendation models (trained artifacts and their metrics) and the operator's repeat policy.

Behaviour events live in ``catalog``; these rows only describe what was trained and how to serve.
"""

from __future__ import annotations

from django.db import models

from backbone.models import TrainedModel
from catalog.models import Customer


class RecommenderModel(TrainedModel):
    """One trained recommender (``recommend.ml.RankedHybridModel``): a folder under
    ``MODELS_DIR/recommend/`` with the lifecycle every trained artifact shares.

    Trained by ``manage.py train recommend`` (a training job, ``recommend.services.fit``); at most
    one is active, and ``backbone.lifecycle`` activates and rolls back.
    """

    n_items = models.PositiveIntegerField(default=0, help_text="Products with events (what the model ranks).")
    n_customers = models.PositiveIntegerField(default=0)
    n_events = models.PositiveIntegerField(default=0)

    class Meta(TrainedModel.Meta):
        pass


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
