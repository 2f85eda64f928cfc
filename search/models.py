"""Judged queries and graded relevance labels (training and evaluation data for search)."""

from __future__ import annotations

from django.db import models


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
