"""django-filter filter sets of the catalogue API."""

from __future__ import annotations

from django import forms
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema_field

from catalog.filtering import SentFiltersForm
from catalog.models import Product
from config.schema import TEXT_SCHEMA


@extend_schema_field(TEXT_SCHEMA)
class TextFilter(filters.CharFilter):
    """A text filter, documented as non-blank (a blank one is refused, see :class:`SentFiltersForm`)."""


@extend_schema_field({"type": "number", "maximum": 1e50})
class PriceFilter(filters.NumberFilter):
    """A price bound, read as a float: a decimal with a huge exponent (``1e-999999999``) overflowed
    PostgreSQL's numeric (a 500). django-filter refuses numbers over 1e50, Django's FloatField inf and nan."""

    field_class = forms.FloatField


class ProductFilter(filters.FilterSet):
    sku = TextFilter(field_name="sku")
    brand = TextFilter(field_name="brand")
    category = TextFilter(field_name="category_path", lookup_expr="startswith")
    min_price = PriceFilter(field_name="price", lookup_expr="gte")
    max_price = PriceFilter(field_name="price", lookup_expr="lte")
    title = TextFilter(field_name="title", lookup_expr="icontains")
    in_stock = filters.BooleanFilter(field_name="in_stock")  # true/false (1/0); anything else is a 400

    class Meta:
        model = Product
        fields = ["sku", "brand", "in_stock", "category", "min_price", "max_price", "title"]
        form = SentFiltersForm
