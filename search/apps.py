from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"
    verbose_name = "Search"

    def ready(self) -> None:
        from backbone import registry
        from catalog import importers
        from search import evaluation, services
        from search.importers import import_homedepot

        importers.register("homedepot", import_homedepot)
        registry.register_evaluator("search", ("homedepot",), evaluation.evaluate_search)
        registry.register_task("search", services.build_training_task)
