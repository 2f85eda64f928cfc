from django.apps import AppConfig


class AdsConfig(AppConfig):
    name = "ads"
    verbose_name = "Ads"

    def ready(self) -> None:
        from ads import evaluation, services
        from ads.embeddings import ad_index
        from ads.importers import import_ipinyou
        from backbone import registry
        from catalog import importers

        importers.register("ipinyou", import_ipinyou)
        registry.register_evaluator("ads", evaluation.DATASETS, evaluation.run)
        registry.register_index(ad_index)  # creatives are re-embedded when a backbone version is activated
        registry.register_task("ads_ctr", services.build_text_training_task)
