"""The demo storefront: a page served by the platform that calls the public API as a shop's front end would."""

from django.apps import AppConfig


class StorefrontConfig(AppConfig):
    name = "storefront"
    verbose_name = "Demo storefront"
