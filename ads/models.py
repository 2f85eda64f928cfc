"""Advertisers, campaigns, ads, ad slots, served impressions (with click tokens), daily spend, CTR models."""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from pgvector.django import VectorField

from backbone.models import TrainedModel

MONEY = {"max_digits": 12, "decimal_places": 4}


class AdImpression(models.Model):
    """One logged impression of a dataset (e.g. iPinYou) and whether it was clicked; ``features`` holds the raw fields."""

    external_id = models.CharField(max_length=64, unique=True, help_text="dataset:row id")
    dataset = models.CharField(max_length=50, db_index=True)
    clicked = models.BooleanField()
    features = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.external_id} ({'click' if self.clicked else 'no click'})"


class Advertiser(models.Model):
    """A company that buys ad slots."""

    name = models.CharField(max_length=200, unique=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Campaign(models.Model):
    """A budgeted set of ads with a bid per click and targeting.

    Targeting: ``target_categories`` (category path prefixes of the context product; empty =
    any), ``target_keywords`` (words of the query or context product title; empty = any),
    ``schedule_hours`` (0-23, UTC) and ``schedule_weekdays`` (0 = Monday; empty = always),
    and the active dates ``start_date``/``end_date`` (inclusive, either may be open).
    """

    advertiser = models.ForeignKey(Advertiser, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    daily_budget = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal("0"))])
    bid_per_click = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal("0.0001"))])
    target_categories = models.JSONField(default=list, blank=True, help_text='e.g. ["tools", "appliances/washers"]')
    target_keywords = models.JSONField(default=list, blank=True, help_text='lower-case words, e.g. ["drill", "saw"]')
    schedule_hours = models.JSONField(default=list, blank=True, help_text="UTC hours 0-23; empty = all day")
    schedule_weekdays = models.JSONField(
        default=list, blank=True, help_text="0 = Monday ... 6 = Sunday; empty = every day"
    )
    start_date = models.DateField(null=True, blank=True)
    end_date = models.DateField(null=True, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["advertiser__name", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(daily_budget__gte=0), name="campaign_budget_not_negative"),
            models.CheckConstraint(condition=Q(bid_per_click__gt=0), name="campaign_bid_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.advertiser} / {self.name}"


class Ad(models.Model):
    """A creative (title and text) of a campaign, optionally landing on a catalogue product."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="ads")
    title = models.CharField(max_length=200)
    text = models.TextField(blank=True)
    landing_product = models.ForeignKey(
        "catalog.Product", null=True, blank=True, on_delete=models.SET_NULL, related_name="ads"
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title

    @property
    def creative_text(self) -> str:
        """The text the backbone embeds for this ad."""
        return " | ".join(p for p in (self.title, self.text) if p)


class AdEmbedding(models.Model):
    """An ad creative's embedding under one backbone version, with the text it was computed from
    (a stale row, whose ``text`` differs from the ad's creative text now, is re-embedded when served)."""

    ad = models.ForeignKey(Ad, on_delete=models.CASCADE, related_name="embeddings")
    version = models.ForeignKey("backbone.ModelVersion", on_delete=models.CASCADE, related_name="+")
    text = models.TextField()
    embedding = VectorField(dimensions=384)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ad", "version"], name="one_ad_embedding_per_version")]

    def __str__(self) -> str:
        return f"{self.ad_id} @ {self.version_id}"


class AdSlot(models.Model):
    """A place on the storefront that shows ads; ``reserve_price`` is the minimum expected value per impression."""

    name = models.SlugField(max_length=64, unique=True)
    reserve_price = models.DecimalField(
        **MONEY,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Minimum bid x pCTR (expected value per impression) an ad needs to be shown.",
    )
    max_ads = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(20)])
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=Q(reserve_price__gte=0), name="slot_reserve_not_negative")]

    def __str__(self) -> str:
        return self.name


def new_token() -> str:
    return secrets.token_urlsafe(24)


class ServedImpression(models.Model):
    """An ad shown in a slot; its token is what a click reports. Clicked and charged at most once.

    ``price`` is what a click on it costs (generalised second price, fixed when served) and what it
    reserves on its campaign's budget of the serving day while the token is clickable (``ads.budget``);
    ``charged`` is what was actually charged (0 only when the budget was lowered after serving).
    """

    token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    ad = models.ForeignKey(Ad, on_delete=models.CASCADE, related_name="impressions")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="impressions")
    slot = models.ForeignKey(AdSlot, on_delete=models.CASCADE, related_name="impressions")
    position = models.PositiveSmallIntegerField(default=0)
    pctr = models.FloatField()
    bid = models.DecimalField(**MONEY)
    price = models.DecimalField(**MONEY)
    features = models.JSONField(default=dict, blank=True, help_text="Context fields the pCTR model saw.")
    context_text = models.TextField(blank=True)
    model_name = models.CharField(max_length=100, blank=True)
    arm = models.CharField(max_length=1, blank=True, default="", db_default="", help_text="A/B arm, in a test.")
    # set by selection (not auto_now_add): the time its budget reservation was checked at
    served_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    charged = models.DecimalField(**MONEY, null=True, blank=True)

    class Meta:
        ordering = ["-served_at", "-id"]
        indexes = [models.Index(fields=["campaign", "served_at"], name="served_campaign_time")]

    def __str__(self) -> str:
        return f"{self.ad_id} in {self.slot_id} ({'clicked' if self.clicked_at else 'shown'})"


class CampaignSpend(models.Model):
    """What a campaign spent on one day (UTC); charges are conditional updates that never pass the budget."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="spend")
    day = models.DateField()
    amount = models.DecimalField(**MONEY, default=Decimal("0"))
    clicks = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "day"], name="one_spend_row_per_campaign_day"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="spend_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.day}: {self.amount}"


class CtrModelVersion(TrainedModel):
    """A trained pCTR model (weights.safetensors, config.json, metrics.json) fitted on the creative and
    context embeddings of one backbone version, which serving then embeds with; one serves at a time."""

    backbone_version = models.ForeignKey(
        "backbone.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    SAME_BACKBONE = True  # an A/B challenger must read the embeddings of the serving one's backbone

    class Meta(TrainedModel.Meta):
        verbose_name = "pCTR model version"
