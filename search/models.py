"""Judged queries, graded relevance labels, the search log with its clicks (search training data),
and the learned rankers trained on them."""

from __future__ import annotations

from django.contrib.postgres.indexes import GinIndex, GistIndex
from django.db import models

from backbone.models import TrainedModel


class JudgedQuery(models.Model):
    """A search query with human relevance judgements, e.g. from Home Depot."""

    external_id = models.CharField(max_length=64, unique=True)
    text = models.CharField(max_length=500)
    dataset = models.CharField(max_length=50, blank=True, db_index=True)

    class Meta:
        ordering = ["external_id"]
        verbose_name_plural = "judged queries"

    def __str__(self) -> str:
        return self.text


class RelevanceLabel(models.Model):
    """A graded judgement of one product for one query (Home Depot: 1.0-3.0)."""

    query = models.ForeignKey(JudgedQuery, on_delete=models.CASCADE, related_name="labels")
    product = models.ForeignKey("catalog.Product", on_delete=models.CASCADE, related_name="+")
    relevance = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["query", "product"], name="one_label_per_query_product")]

    def __str__(self) -> str:
        return f"{self.query_id}/{self.product_id}: {self.relevance}"


class SearchQueryLog(models.Model):
    """One storefront search: what was asked, what it matched, what was shown (training data)."""

    text = models.CharField(max_length=500)
    normalized = models.CharField(max_length=500, db_index=True, help_text="Lower-cased, single-spaced.")
    corrected = models.CharField(max_length=500, blank=True, help_text="The query after typo correction.")
    filters = models.JSONField(default=dict, blank=True)
    sort = models.CharField(max_length=20, default="relevance")
    page = models.PositiveIntegerField(default=1)
    result_count = models.PositiveIntegerField(default=0, help_text="Size of the whole match set.")
    results = models.JSONField(default=list, blank=True, help_text="Product ids shown on the page, in order.")
    model_version = models.CharField(max_length=100, blank=True)
    ranker = models.CharField(max_length=20, blank=True, help_text="'learned' or 'fusion'.")
    ranker_name = models.CharField(
        max_length=100, blank=True, default="", db_default="", help_text="The learned ranker's row, when one ranked."
    )
    arm = models.CharField(max_length=1, blank=True, default="", db_default="", help_text="A/B arm, in a test.")
    latency_ms = models.FloatField(default=0.0)
    session = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            GinIndex(name="search_log_normalized_trgm", fields=["normalized"], opclasses=["gin_trgm_ops"]),
            # suggestions: the nearest past queries by word similarity (an ordered index scan, ``<<->``)
            GistIndex(name="search_log_normalized_gist", fields=["normalized"], opclasses=["gist_trgm_ops"]),
            models.Index(fields=["result_count", "-created_at"], name="search_log_zero_results"),
        ]

    def __str__(self) -> str:
        return f"{self.text!r} ({self.result_count})"


class SearchClick(models.Model):
    """A shopper opened a product from a logged search's results."""

    query = models.ForeignKey(SearchQueryLog, on_delete=models.CASCADE, related_name="clicks")
    product = models.ForeignKey("catalog.Product", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField(help_text="1-based rank on the page the shopper saw.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["query", "product"], name="one_click_per_search_product")]

    def __str__(self) -> str:
        return f"{self.query_id} -> {self.product_id} @{self.position}"


class SearchRanker(TrainedModel):
    """A learned ranker (LightGBM lambdarank over the serving pipeline's candidate features) of one
    backbone version: its folder holds ``ranker.txt`` and ``config.json``.

    It serves only while it is active *and* its ``backbone_version`` is the active backbone version
    (its features include that version's cosine similarities); otherwise search ranks without it.
    """

    backbone_version = models.ForeignKey(
        "backbone.ModelVersion", on_delete=models.CASCADE, related_name="search_rankers"
    )
    SAME_BACKBONE = True  # serves only with the backbone version it was trained for (A/B challengers too)

    class Meta(TrainedModel.Meta):
        pass
