from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalogue"

    def ready(self) -> None:
        from backbone import registry
        from catalog.embeddings import product_index

        registry.register_index(product_index)
