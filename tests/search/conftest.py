"""Fixtures of the search tests: a small embedded catalogue under the tiny active backbone."""

from __future__ import annotations

import pytest

from catalog.services import embed_products
from search import services
from tests.factories import ProductFactory

TITLES = [
    ("Cordless drill driver 18V", "DeWalt", "tools/power/drills", "129.00"),
    ("Hammer drill with case", "Bosch", "tools/power/drills", "89.50"),
    ("Claw hammer 16 oz", "Stanley", "tools/hand/hammers", "19.99"),
    ("Wood screws box of 100", "Hillman", "hardware/fasteners", "7.49"),
    ("Deck screws stainless steel", "Hillman", "hardware/fasteners", "24.00"),
    ("Circular saw 7-1/4 in", "DeWalt", "tools/power/saws", "149.00"),
    ("Garden hose 50 ft", "Flexzilla", "outdoor/watering", "39.95"),
    ("Ceiling fan with light kit", "Hunter", "lighting/fans", "199.00"),
]


@pytest.fixture(autouse=True)
def fresh_vocabulary():
    """Each test sees its own catalogue: drop the per-process vocabulary and ranker caches."""
    services._VOCABULARY["loaded_at"] = -1e9
    services._RANKERS.clear()
    yield
    services._VOCABULARY["loaded_at"] = -1e9
    services._RANKERS.clear()


@pytest.fixture
def catalogue(tiny_active_version):
    """Eight products with embeddings of the tiny active version."""
    products = [
        ProductFactory(title=title, brand=brand, category_path=category, price=price)
        for title, brand, category, price in TITLES
    ]
    embed_products(product_ids=[p.pk for p in products])
    return products
