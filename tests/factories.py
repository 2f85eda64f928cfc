"""factory_boy factories for the catalogue and backbone."""

from __future__ import annotations

import factory
from django.utils import timezone

from catalog.models import Customer, Event, Product


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    title = factory.Sequence(lambda n: f"Product number {n}")
    brand = "Acme"
    category_path = "tools/saws"
    price = "9.99"


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    external_id = factory.Sequence(lambda n: f"cust-{n}")


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    customer = factory.SubFactory(CustomerFactory)
    product = factory.SubFactory(ProductFactory)
    type = Event.Type.VIEW
    timestamp = factory.LazyFunction(timezone.now)
    client_event_id = factory.Sequence(lambda n: f"evt-{n}")
