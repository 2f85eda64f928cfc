"""The demo storefront page (staff only: it holds the demo's keys)."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render

from storefront.services import demo_context


@staff_member_required
def demo(request):
    """Search with suggestions and facets, a product with similar and bought-together items, "for
    you", the chat widget and an ad slot: each through the public API, with the demo's keys."""
    return render(request, "storefront/demo.html", {"demo": demo_context()})
