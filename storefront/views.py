"""The demo storefront page (staff only: it holds the demo's keys)."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from storefront.services import demo_context


@staff_member_required
def demo(request):
    """Search with suggestions and facets, a product with similar and bought-together items, "for
    you", the chat widget and an ad slot: each through the public API, with the demo's keys.

    Superusers only: the page holds a server-scope key, and what it does is real traffic (events,
    searches and ad clicks that count, are charged and are trained on)."""
    if not request.user.is_superuser:
        raise PermissionDenied("The demo storefront holds a server key: superusers only.")
    return render(request, "storefront/demo.html", {"demo": demo_context()})
