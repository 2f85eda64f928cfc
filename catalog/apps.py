from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalogue"

    def ready(self) -> None:
        from backbone import registry
        from catalog import importers
        from catalog.embeddings import product_index

        registry.register_index(product_index)
        importers.register("movielens", importers.import_movielens)
        importers.register("online_retail", importers.import_online_retail)
