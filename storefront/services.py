"""What the demo storefront page needs: its two API keys, example customers, an ad slot."""

from __future__ import annotations

import json
import os

from django.conf import settings
from django.db.models import Exists, OuterRef

from ads.models import AdSlot
from catalog.models import Customer, Event, StorefrontKey, hash_key
from catalog.services import create_storefront_key

KEYS_FILE = "demo-keys.json"


def demo_keys() -> dict[str, str]:
    """The raw public and server keys of the demo page, kept in ``STATE_DIR/demo-keys.json`` (mode 0600).

    Made on first use and made again when one was revoked or its database is new; the database only
    holds their hashes, like any storefront key's."""
    path = settings.STATE_DIR / KEYS_FILE
    keys = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for scope in (StorefrontKey.Scope.PUBLIC, StorefrontKey.Scope.SERVER):
        raw = keys.get(scope)
        if not raw or not StorefrontKey.objects.filter(key_hash=hash_key(raw), active=True).exists():
            _, keys[scope] = create_storefront_key(name=f"demo storefront ({scope})", scope=scope)
            changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(keys, handle)
    return keys


def example_customers(limit: int = 8) -> list[str]:
    """External ids of a few customers with events (for the page's "for you" picker)."""
    with_events = Exists(Event.objects.filter(customer=OuterRef("pk")))
    return list(Customer.objects.filter(with_events).values_list("external_id", flat=True)[:limit])


def demo_context() -> dict:
    """Everything the page's script is given: keys, customers, the first active ad slot (or None)."""
    slot = AdSlot.objects.filter(active=True).values_list("name", flat=True).first()
    return {"keys": demo_keys(), "customers": example_customers(), "slot": slot, "api": "/api/v1"}
