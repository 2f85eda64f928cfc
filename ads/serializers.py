"""Request and response serializers of the ads API."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from ads.models import Ad, AdSlot, Advertiser, Campaign
from catalog.serializers import JSONTypesMixin, ReferenceStatusMixin

MONEY = {"max_digits": 12, "decimal_places": 4}


class AdvertiserSerializer(ReferenceStatusMixin, JSONTypesMixin, serializers.ModelSerializer):
    class Meta:
        model = Advertiser
        fields = ["id", "name", "active", "created_at"]


class CampaignSerializer(ReferenceStatusMixin, JSONTypesMixin, serializers.ModelSerializer):
    daily_budget = serializers.DecimalField(**MONEY, min_value=Decimal("0"))
    bid_per_click = serializers.DecimalField(**MONEY, min_value=Decimal("0.0001"))
    target_categories = serializers.ListField(child=serializers.CharField(max_length=500), required=False)
    target_keywords = serializers.ListField(child=serializers.CharField(max_length=100), required=False)
    schedule_hours = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=23), required=False)
    schedule_weekdays = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=6), required=False)

    class Meta:
        model = Campaign
        fields = [
            "id",
            "advertiser",
            "name",
            "daily_budget",
            "bid_per_click",
            "target_categories",
            "target_keywords",
            "schedule_hours",
            "schedule_weekdays",
            "start_date",
            "end_date",
            "active",
            "created_at",
        ]

    def validate(self, attrs):
        start = attrs.get("start_date", getattr(self.instance, "start_date", None))
        end = attrs.get("end_date", getattr(self.instance, "end_date", None))
        if start and end and end < start:
            raise serializers.ValidationError({"end_date": "must not be before start_date"})
        if "target_keywords" in attrs:
            attrs["target_keywords"] = [k.strip().lower() for k in attrs["target_keywords"] if k.strip()]
        return attrs


class AdSerializer(ReferenceStatusMixin, JSONTypesMixin, serializers.ModelSerializer):
    landing_product = serializers.SlugRelatedField(
        slug_field="sku", queryset=Ad.landing_product.field.related_model.objects.all(), required=False, allow_null=True
    )

    class Meta:
        model = Ad
        fields = ["id", "campaign", "title", "text", "landing_product", "active", "created_at", "updated_at"]


class AdSlotSerializer(ReferenceStatusMixin, JSONTypesMixin, serializers.ModelSerializer):
    reserve_price = serializers.DecimalField(**MONEY, min_value=Decimal("0"), required=False)

    class Meta:
        model = AdSlot
        fields = ["id", "name", "reserve_price", "max_ads", "active"]


class AdSelectContextSerializer(JSONTypesMixin, serializers.Serializer):
    query = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    product = serializers.CharField(max_length=64, required=False, allow_blank=True, default="", help_text="SKU")
    customer = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")


class AdSelectRequestSerializer(JSONTypesMixin, serializers.Serializer):
    slot = serializers.SlugField(max_length=64)
    context = AdSelectContextSerializer(required=False)
    k = serializers.IntegerField(min_value=1, max_value=20, default=1)


class ServedAdSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Report a click with POST /api/v1/ads/clicks {token}.")
    ad_id = serializers.IntegerField()
    campaign_id = serializers.IntegerField()
    title = serializers.CharField()
    text = serializers.CharField()
    landing_product = serializers.CharField(allow_null=True)
    pctr = serializers.FloatField()
    bid = serializers.DecimalField(**MONEY)
    expected_value = serializers.FloatField()
    price_per_click = serializers.DecimalField(**MONEY, help_text="Second price charged if clicked.")
    position = serializers.IntegerField()


class AdSelectResponseSerializer(serializers.Serializer):
    slot = serializers.CharField()
    model = serializers.CharField(help_text="pCTR model that scored the candidates.")
    arm = serializers.ChoiceField(
        choices=["A", "B"],
        allow_null=True,
        help_text="The arm of a running A/B test that served it (A: the active model, B: the challenger); null without one.",
    )
    candidates = serializers.IntegerField(help_text="Eligible ads before the reserve price.")
    ads = ServedAdSerializer(many=True)


class AdClickRequestSerializer(JSONTypesMixin, serializers.Serializer):
    token = serializers.CharField(max_length=64)


class AdClickResponseSerializer(serializers.Serializer):
    token = serializers.CharField()
    ad_id = serializers.IntegerField()
    charged = serializers.DecimalField(**MONEY)
    budget_exhausted = serializers.BooleanField(help_text="True when the click was recorded but not charged.")


class AdTrainRequestSerializer(JSONTypesMixin, serializers.Serializer):
    activate = serializers.BooleanField(default=True, help_text="Serve the new model when it succeeds.")
    max_epochs = serializers.IntegerField(min_value=1, max_value=100, required=False)
    seeds = serializers.IntegerField(min_value=1, max_value=5, required=False, help_text="Networks in the ensemble.")
    limit = serializers.IntegerField(min_value=20, required=False, help_text="Train on the newest N impressions.")
