"""``evaluate intents`` measures what chat serves: one tiny model trained by the training job and by
the evaluation's own training function, then the evaluation's prediction function and
``POST /api/v1/chat/messages`` answer a few messages alike (the real packaged encoder)."""

from __future__ import annotations

import pytest

from backbone import jobs
from backbone import services as backbone_services
from backbone.models import TrainingJob
from chatbot import evaluation, services
from chatbot.models import Intent, IntentExample
from tests.chatbot.conftest import OPENING_HOURS

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

EXAMPLES = {
    "opening_hours": OPENING_HOURS,
    "refund": [
        "I want my money back",
        "refund my order please",
        "how do I get a refund",
        "can I return this for a refund",
        "the item broke, I want a refund",
        "when will my refund arrive",
        "refund to my card please",
        "I was charged twice, refund me",
        "how long do refunds take",
        "give me my money back for the order",
    ],
    "card_arrival": [
        "where is my new card",
        "my card has not arrived yet",
        "when will my card be delivered",
        "still waiting for my card",
        "how long does the card take to come",
        "card not received",
        "track my card delivery",
        "has my card been sent",
        "the card I ordered never came",
        "when does the card arrive",
    ],
}
MESSAGES = [
    "what time do you open on saturday",
    "I would like my money back for these shoes",
    "my card still hasn't come in the post",
    "what's the weather like tomorrow",
]
QUICK = {"epochs": 2, "batch_size": 8, "seed": 13, "val_fraction": 0.3}


def test_evaluation_predicts_what_the_chat_endpoint_answers(packaged_version, storefront_client, settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    for name, texts in EXAMPLES.items():
        intent = Intent.objects.create(name=name, dataset="shop", answer=f"about {name}")
        IntentExample.objects.bulk_create(IntentExample(intent=intent, text=text) for text in texts)

    job = backbone_services.start_training_job(
        apps=["chatbot"], parameters={**services.training_parameters(), **QUICK}, enqueue=False
    )
    jobs.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    assert backbone_services.get_active_version().pk == job.result_version_id

    # the evaluation's path: the same examples (as its CSV reader gives them), its training and prediction functions
    rows = IntentExample.objects.order_by("id").values_list("text", "intent__name")
    opts = {**evaluation.DEFAULTS, "max_length": settings.BACKBONE_MAX_LENGTH, **QUICK}
    task = evaluation.intent_task(([t for t, _ in rows], [n for _, n in rows]), None, None, opts, QUICK["seed"])
    encoder = evaluation.base_encoder(opts)
    classifier, _ = evaluation.train_model(encoder, task, opts, QUICK["seed"])
    served = evaluation.served_encoder(encoder, onnx=settings.BACKBONE_ONNX_SERVING)
    predictions, _ = evaluation.predict(classifier, served, MESSAGES)

    answers = [
        storefront_client.post("/api/v1/chat/messages", {"text": text, "session": "eval"}, format="json").json()
        for text in MESSAGES
    ]
    assert [(a["intent"], a["confidence"]) for a in answers] == [(p.intent, p.confidence) for p in predictions]
    assert [a["intent"] for a in answers[:3]] == ["opening_hours", "refund", "card_arrival"]
