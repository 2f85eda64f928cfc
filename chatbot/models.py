"""Intents and their training examples (the chatbot's data)."""

from __future__ import annotations

from django.db import models


class Intent(models.Model):
    """A customer-service intent with the answer given for it."""

    name = models.CharField(max_length=100, unique=True)
    dataset = models.CharField(
        max_length=50, blank=True, db_index=True, help_text="Where it came from, e.g. banking77."
    )
    domain = models.CharField(max_length=100, blank=True)
    answer = models.TextField(blank=True)
    hand_off = models.BooleanField(default=False, help_text="Hand the conversation to a person.")
    is_out_of_scope = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IntentExample(models.Model):
    """One labelled message; imported, or confirmed by an operator."""

    class Split(models.TextChoices):
        TRAIN = "train"
        VAL = "val"

    intent = models.ForeignKey(Intent, on_delete=models.CASCADE, related_name="examples")
    text = models.TextField()
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.TRAIN)
    source = models.CharField(max_length=100, blank=True, help_text="e.g. banking77/train.csv")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["intent", "text", "split"], name="unique_intent_example")]

    def __str__(self) -> str:
        return f"{self.intent.name}: {self.text[:60]}"
