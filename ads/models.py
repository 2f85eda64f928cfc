"""Ad impressions with click labels (training data for CTR prediction)."""

from __future__ import annotations

from django.db import models


class AdImpression(models.Model):
    """One served ad impression and whether it was clicked; ``features`` holds the raw fields."""

    external_id = models.CharField(max_length=64, unique=True, help_text="dataset:row id")
    dataset = models.CharField(max_length=50, db_index=True)
    clicked = models.BooleanField()
    features = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.external_id} ({'click' if self.clicked else 'no click'})"
