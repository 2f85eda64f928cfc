"""django-filter filter sets of the catalogue API."""

from __future__ import annotations

import django_filters

from catalog.models import Product


class ProductFilter(django_filters.FilterSet):
    category = django_filters.CharFilter(field_name="category_path", lookup_expr="startswith")
    min_price = django_filters.NumberFilter(field_name="price", lookup_expr="gte")
    max_price = django_filters.NumberFilter(field_name="price", lookup_expr="lte")
    title = django_filters.CharFilter(field_name="title", lookup_expr="icontains")

    class Meta:
        model = Product
        fields = ["sku", "brand", "in_stock", "category", "min_price", "max_price", "title"]
