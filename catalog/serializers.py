"""Request and response serializers of the catalogue API."""

from __future__ import annotations

from rest_framework import serializers

from catalog.models import Event, Product
from catalog.services import products_by_sku

MAX_EVENTS_PER_BATCH = 5000


class ProductSerializer(serializers.ModelSerializer):
    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True)

    class Meta:
        model = Product
        fields = [
            "id",
            "sku",
            "title",
            "description",
            "category_path",
            "brand",
            "price",
            "attributes",
            "in_stock",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_attributes(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value

    def validate_category_path(self, value: str) -> str:
        return "/".join(part.strip() for part in value.split("/") if part.strip())


class EventSerializer(serializers.Serializer):
    client_event_id = serializers.CharField(max_length=128)
    customer = serializers.CharField(max_length=128, required=False, allow_null=True, allow_blank=True)
    product = serializers.CharField(max_length=64, help_text="Product SKU.")
    type = serializers.ChoiceField(choices=Event.Type.choices)
    value = serializers.FloatField(required=False, default=1.0)
    timestamp = serializers.DateTimeField()
    session = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")


class EventBatchRequestSerializer(serializers.Serializer):
    events = EventSerializer(many=True, allow_empty=False, max_length=MAX_EVENTS_PER_BATCH)

    def validate_events(self, events):
        found = products_by_sku([e["product"] for e in events])
        errors = {
            str(i): {"product": [f"Unknown product SKU {e['product']!r}."]}
            for i, e in enumerate(events)
            if e["product"] not in found
        }
        if errors:
            raise serializers.ValidationError(errors)
        for e in events:
            e["product"] = found[e["product"]]
        return events


class EventBatchResponseSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField(help_text="Events whose client_event_id was already stored (ignored).")
