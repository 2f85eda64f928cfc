"""Shared domain data: products, customers, behaviour events, storefront API keys."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from django.contrib.postgres.indexes import GinIndex
from django.core.validators import MinValueValidator
from django.db import models
from pgvector.django import HnswIndex, VectorField


class Product(models.Model):
    """A sellable item; its text feeds the shared backbone."""

    sku = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    category_path = models.CharField(
        max_length=500, blank=True, db_index=True, help_text="Slash-separated, e.g. 'tools/saws'."
    )
    brand = models.CharField(max_length=200, blank=True, db_index=True)
    price = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    attributes = models.JSONField(default=dict, blank=True)
    in_stock = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(price__isnull=True) | models.Q(price__gte=0), name="product_price_not_negative"
            )
        ]
        indexes = [GinIndex(fields=["attributes"], name="product_attributes_gin")]

    def __str__(self) -> str:
        return f"{self.sku} {self.title[:60]}"

    @property
    def text(self) -> str:
        """The text the backbone embeds: title, brand, category and description."""
        parts = [self.title, self.brand, self.category_path.replace("/", " "), self.description]
        return " | ".join(p for p in parts if p)


class Customer(models.Model):
    """A shopper, known by the storefront's own id."""

    external_id = models.CharField(max_length=128, unique=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.external_id


# The times Python (and so every read of an event) can represent, with a day to spare for time zones.
# The API accepts a narrower window (EVENTS_EARLIEST to now + 1 day); rows outside this one, stored
# before that check existed (year 10000, BC), made every training and that customer's reads fail.
READABLE_TIMES = (datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC))


class EventManager(models.Manager):
    """Events whose time can be read: every query of the platform (training, serving, admin) skips the others."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(timestamp__range=READABLE_TIMES)


class Event(models.Model):
    """One behaviour event; ``client_event_id`` makes ingestion idempotent."""

    class Type(models.TextChoices):
        VIEW = "view"
        CLICK = "click"
        CART = "cart"
        PURCHASE = "purchase"
        RATING = "rating"
        RETURN = "return"

    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=16, choices=Type.choices)
    value = models.FloatField(default=1.0, help_text="Rating, quantity or 1.")
    timestamp = models.DateTimeField(db_index=True)
    session = models.CharField(max_length=128, blank=True, db_index=True)
    client_event_id = models.CharField(max_length=128, unique=True)
    rec_id = models.CharField(
        max_length=32,
        blank=True,
        default="",
        db_default="",
        help_text="The recommendation that showed the product (its answer's rec_id).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = EventManager()

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [
            models.Index(fields=["customer", "-timestamp"], name="event_customer_recent"),
            models.Index(fields=["rec_id"], name="event_rec_id", condition=~models.Q(rec_id="")),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.product_id} by {self.customer_id or 'anonymous'}"


def hash_key(raw: str) -> str:
    """Return the stored form of an API key (sha256 hex); keys themselves are never stored."""
    return hashlib.sha256(raw.encode()).hexdigest()


class StorefrontKey(models.Model):
    """An API key of a storefront, with a scope (as Algolia's search-only keys).

    A **public** key is safe to ship in a browser: search, suggest, products, similar, popular,
    bought-together, chat, ad select and click. A **server** key also sends events and reads a named
    customer's recommendations and their reasons: it stays on the shop's back end.
    """

    class Scope(models.TextChoices):
        PUBLIC = "public", "public (browser)"
        SERVER = "server", "server (shop back end)"

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.SERVER)
    prefix = models.CharField(max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def generate_raw_key(scope: str = Scope.SERVER) -> str:
        """A new secret: ``pk_...`` for a public key, ``sk_...`` for a server key (tells them apart in code)."""
        return ("pk_" if scope == StorefrontKey.Scope.PUBLIC else "sk_") + secrets.token_urlsafe(32)


class ProductEmbedding(models.Model):
    """A product's embedding under one backbone version (pgvector, HNSW cosine index)."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="embeddings")
    version = models.ForeignKey("backbone.ModelVersion", on_delete=models.CASCADE, related_name="+")
    embedding = VectorField(dimensions=384)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["product", "version"], name="one_embedding_per_version")]
        indexes = [
            HnswIndex(
                name="product_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            models.Index(fields=["version", "product"], name="product_embedding_version"),
        ]

    def __str__(self) -> str:
        return f"{self.product_id}@{self.version_id}"
