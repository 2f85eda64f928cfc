"""Request and response serializers of the catalogue API, and the request-body rules every app's serializers
share: JSON types as the schema documents them (:class:`JSONTypesMixin`), 404/409 for a missing
reference or a taken unique value (:class:`ReferenceStatusMixin`), integers in a query string as
digits only (:class:`QueryIntegerField`)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import QueryDict
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers

from backbone.errors import UnknownReferences
from catalog.models import Event, Product
from catalog.services import product_ids_by_sku

MAX_EVENTS_PER_BATCH = 5000
# The JSON type each kind of field takes in a request body, as the schema documents it (first match wins).
JSON_TYPES = (
    (serializers.BooleanField, (bool,), "Must be true or false."),
    (serializers.IntegerField, (int,), "Must be an integer."),
    (serializers.FloatField, (int, float), "Must be a number."),
    (serializers.CharField, (str,), "Must be a string."),
    (serializers.DateTimeField, (str,), "Must be a string (ISO 8601)."),
    (serializers.DateField, (str,), "Must be a string (ISO 8601)."),
    (serializers.PrimaryKeyRelatedField, (int,), "Must be an integer id."),
    (serializers.SlugRelatedField, (str,), "Must be a string."),
)


def decimal_pattern(field: serializers.DecimalField) -> str:
    """The text of the values ``field`` takes: ASCII digits, a fraction within its places, a minus sign
    only where negatives are allowed, and no zero where the minimum is the smallest step (a bid)."""
    whole, places = field.max_whole_digits, field.decimal_places or 0
    leading = "[1-9][0-9]*" if whole is None else f"[1-9][0-9]{{0,{whole - 1}}}"
    fraction = rf"(?:\.[0-9]{{1,{places}}})?" if places else ""
    body = f"(?:0|{leading}){fraction}"
    minimum = field.min_value
    if places and minimum is not None and Decimal(minimum) == Decimal(1).scaleb(-places):
        small = "|".join(f"{'0' * zeros}[1-9][0-9]{{0,{places - 1 - zeros}}}" for zeros in range(places))
        body = rf"(?:{leading}{fraction}|0\.(?:{small}))"
    sign = "-?" if minimum is None or minimum < 0 else ""
    return f"^{sign}{body}$"


def wrong_json_type(field: serializers.Field, value: Any) -> str | None:
    """Why ``value`` (parsed JSON) has not the type ``field`` documents; None when it has, or when DRF's
    own checks answer (null, a list or object where another is due)."""
    if value is None:
        return None
    if isinstance(field, serializers.ListField):
        items = value if isinstance(value, list) else []
        return next((message for item in items if (message := wrong_json_type(field.child, item))), None)
    if isinstance(field, serializers.DecimalField) and getattr(field, "coerce_to_string", True) is not False:
        if isinstance(value, str) and re.fullmatch(decimal_pattern(field), value):
            return None
        return 'Must be a decimal number in a string, e.g. "12.50".'
    for kind, types, message in JSON_TYPES:
        if isinstance(field, kind):
            whole_float = kind is serializers.IntegerField and isinstance(value, float) and value.is_integer()
            fits = isinstance(value, types) and (kind is serializers.BooleanField or not isinstance(value, bool))
            return None if fits or whole_float else message
    return None


class JSONTypesMixin:
    """A request body serializer that refuses a value of another JSON type than the schema's: DRF turns
    0 into False, 5 into "5" and " 1e2" into 100, so a client's type error passed silently. A form body
    (the schema documents JSON only) is a 415. Query string serializers (all values text) do not use it."""

    def to_internal_value(self, data):
        if isinstance(data, QueryDict) and data:  # a form body (all values text); the schema documents JSON
            raise exceptions.UnsupportedMediaType(
                "form data", detail="Send the body as JSON (Content-Type: application/json)."
            )
        if not isinstance(data, dict) or isinstance(data, QueryDict):  # not an object, or no body at all
            return super().to_internal_value(data)
        wrong = {
            name: [message]
            for name, field in self.fields.items()
            if name in data and not field.read_only and (message := wrong_json_type(field, data[name]))
        }
        if not wrong:
            return super().to_internal_value(data)
        try:  # the other fields' messages too, as DRF gives them all at once
            super().to_internal_value(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({**exc.detail, **wrong}) from None
        raise serializers.ValidationError(wrong)


class QueryIntegerField(serializers.IntegerField):
    """An integer query parameter written as digits: DRF's own also takes ``10.0`` (and the schema says
    integer), and reads a parameter sent empty (``k=``) as not sent."""

    def get_value(self, dictionary):
        if dictionary.get(self.field_name) == "":  # DRF reads an empty optional parameter as not sent
            return ""  # to_internal_value refuses it
        return super().get_value(dictionary)

    def to_internal_value(self, data):
        if isinstance(data, str) and not re.fullmatch(r"\s*[+-]?\d+\s*", data):
            self.fail("invalid")
        return super().to_internal_value(data)


class MissingReference(exceptions.ValidationError):
    """Input valid but for naming objects that do not exist (``backbone.errors.NotFound``'s 404)."""

    status_code = 404


class DuplicateValue(exceptions.ValidationError):
    """Input valid but for repeating a unique value of another row (``backbone.errors.Conflict``'s 409)."""

    status_code = 409


class ReferenceStatusMixin:
    """A model serializer whose input fails only by naming a missing object answers 404, only by repeating
    a unique value 409, both ``{field: [message]}``; any other error keeps DRF's 400."""

    ERRORS_BY_CODE = {"does_not_exist": MissingReference, "unique": DuplicateValue}

    def is_valid(self, *, raise_exception=False):
        valid = super().is_valid()
        if raise_exception and not valid:
            codes = {getattr(detail, "code", None) for details in self.errors.values() for detail in details}
            error = self.ERRORS_BY_CODE.get(codes.pop()) if len(codes) == 1 else None
            raise (error or exceptions.ValidationError)(self.errors)
        return valid


def _json_strings(value: Any):
    """Every key and string inside a parsed JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item)


def _has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (JSON can carry one; UTF-8 and PostgreSQL cannot)."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


class ProductSerializer(ReferenceStatusMixin, JSONTypesMixin, serializers.ModelSerializer):
    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True)
    attributes = serializers.DictField(
        required=False, help_text="Free-form JSON object (no NUL or unpaired surrogate characters)."
    )

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
        """Refuse what PostgreSQL's jsonb cannot store (a 500 before): NUL and unpaired surrogates."""
        if any("\x00" in text or _has_surrogate(text) for text in _json_strings(value)):
            raise serializers.ValidationError("Keys and strings may not contain NUL or unpaired surrogates.")
        return value

    def validate_category_path(self, value: str) -> str:
        return "/".join(part.strip() for part in value.split("/") if part.strip())


EVENT_TYPES = frozenset(Event.Type.values)
NUMBER_TEXT = r"^-?[0-9]{1,15}(?:\.[0-9]{1,15})?$"  # an event value may come as text, e.g. "2.5"


@extend_schema_field({"anyOf": [{"type": "number"}, {"type": "string", "pattern": NUMBER_TEXT}], "default": 1.0})
class EventValueField(serializers.FloatField):
    """An event's value in the schema: a number, or its digits in a string (:func:`_value` reads both)."""


def _text(item: dict, name: str, max_length: int, *, required: bool, allow_null: bool = False) -> str | None:
    """Validate one string field as DRF's CharField would (whitespace trimmed), a JSON string only as
    :class:`JSONTypesMixin` asks."""
    if name not in item or (item[name] is None and allow_null):
        if required:
            raise _FieldError(name, "This field is required." if name not in item else "This field may not be null.")
        return None
    value = item[name]
    if not isinstance(value, str):
        raise _FieldError(name, "Must be a string.")
    value = value.strip()
    if not value and required:
        raise _FieldError(name, "This field may not be blank.")
    if len(value) > max_length:
        raise _FieldError(name, f"Ensure this field has no more than {max_length} characters.")
    if "\x00" in value:  # PostgreSQL text cannot hold it (DRF's ProhibitNullCharactersValidator)
        raise _FieldError(name, "Null characters are not allowed.")
    if _has_surrogate(value):  # not encodable as UTF-8
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
        "rec_id": lambda: _text(item, "rec_id", 32, required=False) or "",
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
    if isinstance(value, str) and not re.fullmatch(NUMBER_TEXT, value):  # "2.5" yes; "1e999", " 2" no
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
    value = EventValueField(required=False, default=1.0)
    timestamp = serializers.DateTimeField()
    session = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    rec_id = serializers.CharField(
        max_length=32,
        required=False,
        allow_blank=True,
        default="",
        help_text="The rec_id of the recommendation answer that showed this product, if one did (online metrics).",
    )

    class Meta:
        list_serializer_class = EventListSerializer


class EventBatchRequestSerializer(serializers.Serializer):
    events = EventSerializer(many=True, allow_empty=False, max_length=MAX_EVENTS_PER_BATCH)

    def validate_events(self, events):
        """Resolve SKUs to product ids in one query; name every unknown SKU (404: the batch is well formed,
        but names products this shop does not have; nothing of it is stored)."""
        found = product_ids_by_sku([e["product"] for e in events])
        errors = {
            str(i): {"product": [f"Unknown product SKU {e['product']!r}."]}
            for i, e in enumerate(events)
            if e["product"] not in found
        }
        if errors:
            raise UnknownReferences({"events": errors})
        for e in events:
            e["product_id"] = found[e["product"]]
        return events


class EventBatchResponseSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField(help_text="Events whose client_event_id was already stored (ignored).")
