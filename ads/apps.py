from django.apps import AppConfig


class AdsConfig(AppConfig):
    name = "ads"
    verbose_name = "Ads"

    def ready(self) -> None:
        from ads.importers import import_ipinyou
        from catalog import importers

        importers.register("ipinyou", import_ipinyou)
