"""The ads app: campaigns, ad selection by expected value, clicks, and the pCTR model it trains and serves."""

from django.apps import AppConfig


class AdsConfig(AppConfig):
    name = "ads"
    verbose_name = "Ads"

    def ready(self) -> None:
        from ads import datasets, evaluation, training
        from ads.embeddings import ad_index
        from ads.importers import import_ipinyou
        from ads.models import CtrModelVersion
        from backbone import registry
        from catalog import importers

        importers.register("ipinyou", import_ipinyou)
        registry.register_splitter(
            "movielens_ctr",
            datasets.split_movielens,
            rule="each user's latest 3 ratings (ignores --test-fraction, --seed)",
        )
        registry.register_splitter(
            "ipinyou", datasets.split_ipinyou, rule="the last share of the rows in file order (ignores --seed)"
        )
        registry.register_evaluator("ads", evaluation.DATASETS, evaluation.run)
        registry.register_index(ad_index)  # creatives are re-embedded when a backbone version is activated
        registry.register_task("ads_ctr", training.build_text_training_task)
        registry.register_app(
            registry.AppTrainer(
                app="ads",
                tasks=("ads_ctr",),
                fine_tunes=False,
                data=training.training_summary,
                fit=training.fit_ctr_version,
                validate=training.validate_ctr_version,
                model=CtrModelVersion,  # A/B tests: a challenger pCTR model for some customers
            )
        )
