"""The chatbot app: its importers, splitters, training task, evaluator and what ``manage.py train chatbot`` trains."""

from functools import partial

from django.apps import AppConfig


class ChatbotConfig(AppConfig):
    name = "chatbot"
    verbose_name = "Chatbot"

    def ready(self) -> None:
        from backbone import registry
        from catalog import importers
        from chatbot import datasets, evaluation, services
        from chatbot.importers import import_banking77, import_clinc150

        importers.register("banking77", import_banking77)
        importers.register("clinc150", import_clinc150)
        for name in datasets.LABEL_COLUMN:
            registry.register_splitter(
                name,
                partial(datasets.split_intents, dataset=name),
                rule="a seeded share of train.csv, stratified by intent, as test.csv (val.csv copied)",
            )
        registry.register_task("intents", services.build_intent_task)
        registry.register_evaluator("intents", ("banking77", "clinc150"), evaluation.run)
        registry.register_app(
            registry.AppTrainer(
                app="chatbot",
                tasks=("intents",),
                fine_tunes=True,
                data=services.training_summary,
                fit=services.fit_for_version,
                parameters=services.training_parameters(),  # the intent recipe, as evaluate intents trains
                validate=services.validate_version,
            )
        )
