"""The search app: its importer, splitter, backbone task, evaluator, and what ``manage.py train search`` trains."""

from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"
    verbose_name = "Search"

    def ready(self) -> None:
        from backbone import registry
        from catalog import importers
        from search import datasets, evaluation, training
        from search.importers import import_homedepot
        from search.models import SearchRanker

        importers.register("homedepot", import_homedepot)
        registry.register_splitter(
            "homedepot", datasets.split_homedepot, rule="a seeded share of the query texts, with their labels"
        )
        registry.register_evaluator("search", ("homedepot",), evaluation.evaluate_search)
        registry.register_task("search", training.build_training_task)
        registry.register_app(
            registry.AppTrainer(
                app="search",
                tasks=("search",),
                fine_tunes=True,
                data=training.training_summary,
                fit=training.fit_ranker,
                validate=training.validate_version,
                model=SearchRanker,  # A/B tests: a challenger ranker (same backbone) for some sessions
            )
        )
