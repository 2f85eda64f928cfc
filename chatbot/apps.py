from django.apps import AppConfig


class ChatbotConfig(AppConfig):
    name = "chatbot"
    verbose_name = "Chatbot"

    def ready(self) -> None:
        from backbone import registry
        from catalog import importers
        from chatbot import evaluation
        from chatbot.importers import import_banking77, import_clinc150
        from chatbot.services import build_intent_task

        importers.register("banking77", import_banking77)
        importers.register("clinc150", import_clinc150)
        registry.register_task("intents", build_intent_task)
        registry.register_evaluator("intents", ("banking77", "clinc150"), evaluation.run)
