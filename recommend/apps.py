from django.apps import AppConfig


class RecommendConfig(AppConfig):
    name = "recommend"
    verbose_name = "Recommendations"

    def ready(self) -> None:
        from backbone import registry
        from recommend import evaluation, training

        registry.register_evaluator("recommend", evaluation.DATASETS, evaluation.run)
        registry.register_task("recommend_items", training.build_task)
