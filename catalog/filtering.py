"""Strict list filters for every API list (``REST_FRAMEWORK["DEFAULT_FILTER_BACKENDS"]``).

Kept apart from ``catalog.filters`` (which documents its filters through ``config.schema``): DRF
imports the filter backend while ``rest_framework.generics`` is still loading.
"""

from __future__ import annotations

from datetime import UTC

from django import forms
from django.db import models
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField


class SentFiltersForm(forms.Form):
    """Refuses a filter that is sent but would filter nothing (``max_price=``, ``in_stock=maybe``):
    django-filter skips an empty or unreadable value, which answered every product as if it matched."""

    def clean(self):
        cleaned = super().clean()
        for name, value in list(cleaned.items()):
            blank_is_value = getattr(self.fields[name], "blank_is_value", False)
            if name in self.data and value in (None, "") and name not in self.errors and not blank_is_value:
                self.add_error(name, "Give a value or leave this parameter out.")
        return cleaned


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, passed on in UTC: PostgreSQL refuses an offset such as +23:13 (a 500 before)."""

    def clean(self, value):
        moment = super().clean(value)
        try:
            return moment.astimezone(UTC) if moment is not None else None
        except OverflowError:  # 0001-01-01T00:00:00+01:00 has no UTC time
            raise forms.ValidationError("This time is out of range.") from None


class BlankableCharField(forms.CharField):
    """Text whose empty value is a value (``dimension=``: the total), not the filter left out."""

    blank_is_value = True

    def to_python(self, value):
        return None if value is None else str(value).strip()


class BlankableCharFilter(filters.CharFilter):
    """An exact text filter where a parameter sent empty matches ``""`` (left out, it filters nothing)."""

    field_class = BlankableCharField

    def filter(self, qs, value):
        return qs if value is None else qs.filter(**{f"{self.field_name}__{self.lookup_expr}": value})


class UTCDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


def strict_filterset(model, fields: list[str] | dict[str, list[str]]) -> type[filters.FilterSet]:
    """django-filter's FilterSet on ``fields`` of ``model`` (as ``filterset_fields`` builds), refusing a
    filter that is sent empty or unreadable (:class:`SentFiltersForm`); times filter in UTC."""
    meta = type(
        "Meta",
        (),
        {
            "model": model,
            "fields": fields,
            "form": SentFiltersForm,
            "filter_overrides": {models.DateTimeField: {"filter_class": UTCDateTimeFilter}},
        },
    )
    return type(f"{model.__name__}Filter", (filters.FilterSet,), {"Meta": meta})


class StrictFilterBackend(filters.DjangoFilterBackend):
    """django-filter's backend (``DEFAULT_FILTER_BACKENDS``), building the FilterSet of a view's
    ``filterset_fields`` with :func:`strict_filterset`, so every list refuses an empty or unreadable filter."""

    def get_filterset_class(self, view, queryset=None):
        fields = getattr(view, "filterset_fields", None)
        if fields and getattr(view, "filterset_class", None) is None and queryset is not None:
            return strict_filterset(queryset.model, fields)
        return super().get_filterset_class(view, queryset)
