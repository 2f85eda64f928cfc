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
    """Each test sees its own catalogue: drop the per-process vocabulary and loaded rankers."""
    services.reset_caches()
    yield
    services.reset_caches()


@pytest.fixture
def catalogue(tiny_active_version):
    """Eight products with embeddings of the tiny active version."""
    products = [
        ProductFactory(title=title, brand=brand, category_path=category, price=price)
        for title, brand, category, price in TITLES
    ]
    embed_products(product_ids=[p.pk for p in products])
    return products


JUDGED = [
    ("drill", "Cordless drill driver 18V"),
    ("hammer", "Claw hammer 16 oz"),
    ("screws", "Deck screws stainless steel"),
    ("saw", "Circular saw 7-1/4 in"),
    ("hose", "Garden hose 50 ft"),
    ("fan", "Ceiling fan with light kit"),
]


def add_judged_queries(products) -> None:
    """Store 18 judged queries over ``products``: each judges one product relevant (3) and another not (1)."""
    from search.models import JudgedQuery, RelevanceLabel

    by_title = {p.title: p for p in products}
    for i, (query, title) in enumerate(JUDGED * 3):
        judged = JudgedQuery.objects.create(external_id=f"q{i}", text=f"{query} {i}", dataset="test")
        RelevanceLabel.objects.create(query=judged, product=by_title[title], relevance=3.0)
        other = by_title[JUDGED[(i + 1) % len(JUDGED)][1]]
        RelevanceLabel.objects.create(query=judged, product=other, relevance=1.0)


@pytest.fixture
def judged(catalogue):
    """The catalogue with 18 judged queries (see :func:`add_judged_queries`)."""
    add_judged_queries(catalogue)
    return catalogue
