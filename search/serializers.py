"""Request and response serializers of the search API."""

from __future__ import annotations

import math

from rest_framework import serializers

from catalog.serializers import JSONTypesMixin, QueryIntegerField
from search.services import MODES, SORTS

MAX_QUERY_LENGTH = 500
# Autocomplete runs on every keystroke, and its trigram matching costs grow with the input: a random
# 500-character suggest query took ~2 s and slowed every other request. 64 characters bound it.
SUGGEST_MAX_LENGTH = 64


class StrictQuerySerializer(serializers.Serializer):
    """Rejects query parameters it does not declare, so a misspelt filter is a 400, not ignored."""

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown parameter."] for name in unknown})
        return super().to_internal_value(data)


class PriceBoundField(serializers.FloatField):
    """A price bound in a query: any finite number from 0 to 1e10, as many digits as sent (0.005 too).

    A decimal with a huge exponent (``1e-999999999``) overflowed PostgreSQL's numeric: a 500."""

    def __init__(self, **kwargs):
        super().__init__(min_value=0, max_value=1e10, required=False, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):  # "nan" passes both bounds
            self.fail("invalid")
        return value


class SearchRequestSerializer(StrictQuerySerializer):
    q = serializers.CharField(max_length=MAX_QUERY_LENGTH, trim_whitespace=True)
    category = serializers.CharField(max_length=500, required=False, default="", help_text="Category-path prefix.")
    brand = serializers.CharField(max_length=200, required=False, default="")
    min_price = PriceBoundField()
    max_price = PriceBoundField()
    in_stock = serializers.BooleanField(required=False, allow_null=True, default=None)
    sort = serializers.ChoiceField(choices=SORTS, default="relevance")
    page = QueryIntegerField(min_value=1, max_value=1000, default=1)
    page_size = QueryIntegerField(min_value=1, max_value=100, default=20)
    session = serializers.CharField(max_length=128, required=False, default="")
    mode = serializers.ChoiceField(
        choices=MODES, default="hybrid", help_text="'lexical': PostgreSQL full text only (no model)."
    )
    facets = serializers.BooleanField(default=True, help_text="Compute facet counts over the match set.")


class SearchHitSerializer(serializers.Serializer):
    product_id = serializers.IntegerField()
    sku = serializers.CharField()
    title = serializers.CharField()
    brand = serializers.CharField()
    category_path = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    in_stock = serializers.BooleanField()
    score = serializers.FloatField()
    matched_by = serializers.ChoiceField(choices=["lexical", "semantic", "both"])


class FacetValueSerializer(serializers.Serializer):
    value = serializers.CharField()
    count = serializers.IntegerField()


class PriceBucketSerializer(serializers.Serializer):
    min = serializers.FloatField()
    max = serializers.FloatField(allow_null=True)
    count = serializers.IntegerField()


class FacetsSerializer(serializers.Serializer):
    category = FacetValueSerializer(many=True)
    brand = FacetValueSerializer(many=True)
    price = PriceBucketSerializer(many=True)


class SearchResponseSerializer(serializers.Serializer):
    search_id = serializers.IntegerField(source="log_id", allow_null=True, help_text="Send it back with clicks.")
    query = serializers.CharField()
    corrected = serializers.CharField()
    total = serializers.IntegerField(help_text="Size of the whole match set.")
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    sort = serializers.CharField()
    ranker = serializers.CharField()
    arm = serializers.ChoiceField(
        choices=["A", "B"],
        allow_null=True,
        help_text="The arm of a running A/B test of rankers that ranked it (by session); null without one.",
    )
    results = SearchHitSerializer(many=True, source="hits")
    facets = FacetsSerializer()
    timings_ms = serializers.DictField(child=serializers.FloatField())


class SuggestRequestSerializer(StrictQuerySerializer):
    q = serializers.CharField(max_length=SUGGEST_MAX_LENGTH, trim_whitespace=True)
    limit = QueryIntegerField(min_value=1, max_value=20, default=8)


class SuggestionSerializer(serializers.Serializer):
    text = serializers.CharField()
    kind = serializers.ChoiceField(choices=["query", "product"])
    sku = serializers.CharField(allow_null=True)
    searches = serializers.IntegerField()


class SuggestResponseSerializer(serializers.Serializer):
    suggestions = SuggestionSerializer(many=True)


class ClickRequestSerializer(JSONTypesMixin, serializers.Serializer):
    search_id = serializers.IntegerField(min_value=1)
    sku = serializers.CharField(max_length=64)
    position = serializers.IntegerField(min_value=1, max_value=10_000)


class ClickResponseSerializer(serializers.Serializer):
    click_id = serializers.IntegerField()
