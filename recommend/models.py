"""Recommendation models (trained artifacts and their metrics) and the operator's repeat policy.

Behaviour events live in ``catalog``; these rows only describe what was trained and how to serve.
"""

from __future__ import annotations

import secrets

from django.contrib.postgres.fields import ArrayField
from django.db import models

from backbone.models import TrainedModel
from catalog.models import Customer


class RecommenderModel(TrainedModel):
    """One trained recommender (``recommend.ml.RankedHybridModel``): a folder under
    ``MODELS_DIR/recommend/`` with the lifecycle every trained artifact shares.

    Trained by ``manage.py train recommend`` (a training job, ``recommend.training.fit``); at most
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


def new_rec_id() -> str:
    return secrets.token_hex(8)


class RecommendationLog(models.Model):
    """One recommendation answer as served: what was shown, from which source, by which model.

    Its ``rec_id`` is in the answer; an event that echoes it (``Event.rec_id``) is a click on it,
    which the online metrics (``monitoring``) attribute to the source of the product it names.
    """

    class Kind(models.TextChoices):
        FOR_YOU = "for_you", "for you"
        SIMILAR = "similar"
        BOUGHT_TOGETHER = "bought_together", "bought together"
        POPULAR = "popular"

    rec_id = models.CharField(max_length=32, unique=True, default=new_rec_id, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    customer = models.CharField(max_length=128, blank=True, help_text="External id (for you).")
    product = models.CharField(max_length=64, blank=True, help_text="SKU asked about (similar, bought together).")
    fallback = models.CharField(max_length=20, blank=True, help_text="Why popular items were served, if they were.")
    model_version = models.CharField(max_length=100, blank=True, help_text="The recommender that served it.")
    arm = models.CharField(max_length=1, blank=True, default="", help_text="A/B arm of a for-you answer in a test.")
    products = ArrayField(models.BigIntegerField(), default=list, help_text="Product ids shown, in order.")
    sources = ArrayField(models.CharField(max_length=16), default=list, help_text="Each product's source.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.rec_id} {self.kind} ({len(self.products)} items)"


class CustomerPreview(Customer):
    """A customer as the recommender sees them (admin page: history beside recommendations and reasons)."""

    class Meta:
        proxy = True
        verbose_name = "customer recommendation preview"
