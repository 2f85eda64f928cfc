"""The recommend app: its splitters, evaluator, backbone task and what ``manage.py train recommend`` trains."""

from django.apps import AppConfig


class RecommendConfig(AppConfig):
    name = "recommend"
    verbose_name = "Recommendations"

    def ready(self) -> None:
        from backbone import registry
        from recommend import datasets, evaluation, training
        from recommend.models import RecommenderModel

        # the shared data's own holdout rule, by time: --test-fraction and --seed are ignored
        registry.register_splitter(
            "movielens", datasets.split_movielens, rule="each user's last rating (ignores --test-fraction, --seed)"
        )
        registry.register_splitter(
            "online_retail",
            datasets.split_online_retail,
            rule="each customer's last purchase invoice and what follows (ignores --test-fraction, --seed)",
        )
        registry.register_evaluator("recommend", evaluation.DATASETS, evaluation.run)
        # Not in the shared fine-tune by default (``tasks=()``): its co-occurrence pairs would add an
        # epoch of encoder steps over 20,000 text pairs to every full ``train`` on two CPU cores, and
        # the served recommender uses text only as one of its ranker's features. A job that names
        # ``recommend_items`` among its tasks still trains it.
        registry.register_task("recommend_items", training.build_task)
        registry.register_app(
            registry.AppTrainer(
                app="recommend",
                tasks=(),
                fine_tunes=False,
                data=training.training_summary,
                fit=training.fit,
                validate=training.validate_version,
                model=RecommenderModel,  # A/B tests: a challenger recommender for some customers
            )
        )
