"""Request and response serializers of the catalogue API."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from catalog.models import Event, Product
from catalog.services import product_ids_by_sku

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


EVENT_TYPES = frozenset(Event.Type.values)


def _text(item: dict, name: str, max_length: int, *, required: bool, allow_null: bool = False) -> str | None:
    """Validate one string field as DRF's CharField would (numbers become text, whitespace trimmed)."""
    if name not in item or (item[name] is None and allow_null):
        if required:
            raise _FieldError(name, "This field is required." if name not in item else "This field may not be null.")
        return None
    value = item[name]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _FieldError(name, "Not a valid string.")
    value = str(value).strip()
    if not value and required:
        raise _FieldError(name, "This field may not be blank.")
    if len(value) > max_length:
        raise _FieldError(name, f"Ensure this field has no more than {max_length} characters.")
    if "\x00" in value:  # PostgreSQL text cannot hold it (DRF's ProhibitNullCharactersValidator)
        raise _FieldError(name, "Null characters are not allowed.")
    if any("\ud800" <= ch <= "\udfff" for ch in value):  # not encodable as UTF-8
        raise _FieldError(name, "Surrogate characters are not allowed.")
    return value


class _FieldError(Exception):
    def __init__(self, field: str, message: str):
        self.field, self.message = field, message


def validate_event(item: Any) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
    """Validate one raw event dict; return (clean event, {}) or (None, {field: [message]}).

    The same rules as :class:`EventSerializer` (the documented schema), in plain Python: DRF's
    per-field machinery costs about half a millisecond per event, most of a 1,000-event batch.
    """
    if not isinstance(item, dict):
        return None, {"non_field_errors": ["Invalid data. Expected a dictionary."]}
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    checks = {
        "client_event_id": lambda: _text(item, "client_event_id", 128, required=True),
        "customer": lambda: _text(item, "customer", 128, required=False, allow_null=True),
        "product": lambda: _text(item, "product", 64, required=True),
        "type": lambda: _event_type(item),
        "value": lambda: _value(item),
        "timestamp": lambda: _timestamp(item),
        "session": lambda: _text(item, "session", 128, required=False) or "",
    }
    for name, check in checks.items():
        try:
            clean[name] = check()
        except _FieldError as exc:
            errors.setdefault(exc.field, []).append(exc.message)
    return (None, errors) if errors else (clean, {})


def _event_type(item: dict) -> str:
    if "type" not in item:
        raise _FieldError("type", "This field is required.")
    value = item["type"]
    if not isinstance(value, str) or value not in EVENT_TYPES:
        raise _FieldError("type", f'"{value}" is not a valid choice.')
    return value


def _value(item: dict) -> float:
    value = item.get("value", 1.0)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _FieldError("value", "A valid number is required.")
    try:
        number = float(value)
    except ValueError:
        raise _FieldError("value", "A valid number is required.") from None
    if not math.isfinite(number):
        raise _FieldError("value", "A valid number is required.")
    return number


def _timestamp(item: dict) -> datetime:
    if "timestamp" not in item:
        raise _FieldError("timestamp", "This field is required.")
    value = item["timestamp"]
    parsed = None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
    if parsed is None:
        raise _FieldError("timestamp", "Datetime has wrong format. Use ISO 8601, e.g. 2024-01-31T12:00:00Z.")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, timezone.get_default_timezone())
    return _in_window(parsed)


def _in_window(parsed: datetime) -> datetime:
    """Refuse a time outside [EVENTS_EARLIEST, now + 1 day]: year 10000 or BC rows broke every later read."""
    earliest = datetime.fromisoformat(settings.EVENTS_EARLIEST).replace(tzinfo=UTC)
    latest = timezone.now() + timedelta(days=1)
    try:
        in_window = earliest <= parsed.astimezone(UTC) <= latest
    except OverflowError:  # 9999-12-31T23:59:59-10:00 is past the largest datetime in UTC
        in_window = False
    if not in_window:
        raise _FieldError("timestamp", f"Must be between {earliest.date().isoformat()} and one day from now.")
    return parsed


class EventListSerializer(serializers.ListSerializer):
    """A batch of events validated by :func:`validate_event` (fast path); errors keyed by position."""

    def to_internal_value(self, data):
        if not isinstance(data, list):
            raise serializers.ValidationError({"non_field_errors": ["Expected a list of events."]})
        if not data:
            raise serializers.ValidationError({"non_field_errors": ["This list may not be empty."]})
        if len(data) > MAX_EVENTS_PER_BATCH:
            raise serializers.ValidationError(
                {"non_field_errors": [f"Ensure this field has no more than {MAX_EVENTS_PER_BATCH} elements."]}
            )
        clean, errors = [], {}
        for i, item in enumerate(data):
            event, problems = validate_event(item)
            if problems:
                errors[str(i)] = problems
            else:
                clean.append(event)
        if errors:
            raise serializers.ValidationError(errors)
        return clean


class EventSerializer(serializers.Serializer):
    """One behaviour event (the schema); batches are validated by :class:`EventListSerializer`."""

    client_event_id = serializers.CharField(max_length=128)
    customer = serializers.CharField(max_length=128, required=False, allow_null=True, allow_blank=True)
    product = serializers.CharField(max_length=64, help_text="Product SKU.")
    type = serializers.ChoiceField(choices=Event.Type.choices)
    value = serializers.FloatField(required=False, default=1.0)
    timestamp = serializers.DateTimeField()
    session = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")

    class Meta:
        list_serializer_class = EventListSerializer


class EventBatchRequestSerializer(serializers.Serializer):
    events = EventSerializer(many=True, allow_empty=False, max_length=MAX_EVENTS_PER_BATCH)

    def validate_events(self, events):
        """Resolve SKUs to product ids in one query; name every unknown SKU."""
        found = product_ids_by_sku([e["product"] for e in events])
        errors = {
            str(i): {"product": [f"Unknown product SKU {e['product']!r}."]}
            for i, e in enumerate(events)
            if e["product"] not in found
        }
        if errors:
            raise serializers.ValidationError(errors)
        for e in events:
            e["product_id"] = found[e["product"]]
        return events


class EventBatchResponseSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField(help_text="Events whose client_event_id was already stored (ignored).")
