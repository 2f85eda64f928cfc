"""Intents and their training examples (the chatbot's data)."""

from __future__ import annotations

from django.db import models
from pgvector.django import VectorField


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


class IntentPrototype(models.Model):
    """Mean embedding of an intent's examples under one backbone version.

    Serves intents that the version's trained head does not know (added after training), so a
    new intent answers within seconds; the next fine-tune folds it into the head. Before any
    training, ``threshold`` says how similar a message must be to count as any such intent.
    """

    intent = models.ForeignKey(Intent, on_delete=models.CASCADE, related_name="prototypes")
    version = models.ForeignKey("backbone.ModelVersion", on_delete=models.CASCADE, related_name="+")
    embedding = VectorField(dimensions=384)
    n_examples = models.PositiveIntegerField()
    threshold = models.FloatField(
        null=True,
        blank=True,
        help_text="Cosine under which a message is unlike the examples (leave-one-out); empty with one example.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["intent", "version"], name="unique_intent_prototype")]

    def __str__(self) -> str:
        return f"{self.intent.name} @ {self.version_id}"


class Conversation(models.Model):
    """A chat session of one storefront (``session`` is the storefront's own id for it)."""

    storefront_key = models.ForeignKey("catalog.StorefrontKey", null=True, blank=True, on_delete=models.SET_NULL)
    session = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            # NULLS NOT DISTINCT: staff sessions (no key) are one conversation too, and the upsert of
            # ``answer_message`` finds them (PostgreSQL 15+)
            models.UniqueConstraint(
                fields=["storefront_key", "session"], name="unique_conversation_session", nulls_distinct=False
            )
        ]

    def __str__(self) -> str:
        return self.session


class MessageQuerySet(models.QuerySet):
    def review_queue(self) -> MessageQuerySet:
        return self.filter(review_status=Message.Review.PENDING)


class Message(models.Model):
    """A shopper's message with what the classifier made of it, and the operator's review."""

    class Outcome(models.TextChoices):
        ANSWERED = "answered"
        CLARIFY = "clarify", "asked to clarify"
        OUT_OF_SCOPE = "out_of_scope", "out of scope"

    class Review(models.TextChoices):
        NOT_NEEDED = "not_needed", "not needed"
        PENDING = "pending"
        CONFIRMED = "confirmed"
        RELABELLED = "relabelled"
        DISMISSED = "dismissed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    text = models.TextField()
    intent = models.ForeignKey(Intent, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages")
    confidence = models.FloatField(default=0.0)
    alternatives = models.JSONField(default=list, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, db_index=True)
    hand_off = models.BooleanField(default=False)
    answer = models.TextField(blank=True)
    version = models.ForeignKey(
        "backbone.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    review_status = models.CharField(max_length=16, choices=Review.choices, default=Review.NOT_NEEDED, db_index=True)
    reviewed_intent = models.ForeignKey(
        Intent, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviewed_messages"
    )
    reviewed_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.text[:60]
