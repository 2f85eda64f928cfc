"""The chat endpoint, the review queue and teaching intents, on the database and a tiny backbone."""

from __future__ import annotations

import pytest
from django.urls import reverse

from chatbot import services
from chatbot.models import Conversation, Intent, IntentExample, IntentPrototype, Message

pytestmark = pytest.mark.django_db
URL = "/api/v1/chat/messages"


def test_taught_intent_answers_at_once_without_training(taught_intents):
    reply = services.answer_message(text="hello there", session="s1")

    assert reply.intent == "greeting"
    assert reply.outcome in ("answered", "clarify")
    assert IntentPrototype.objects.count() == 2
    assert [a["intent"] for a in reply.alternatives] == ["refund"]


def test_message_endpoint_answers_and_stores_the_conversation(storefront_client, taught_intents):
    response = storefront_client.post(URL, {"text": "refund my order please", "session": "abc"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["intent"] == "refund"
    assert set(body) == {
        "message_id",
        "intent",
        "confidence",
        "alternatives",
        "outcome",
        "answer",
        "hand_off",
        "version",
    }
    assert 0.0 <= body["confidence"] <= 1.0
    message = Message.objects.get(pk=body["message_id"])
    assert message.conversation.session == "abc" and message.text == "refund my order please"
    storefront_client.post(URL, {"text": "hi", "session": "abc"}, format="json")
    assert Conversation.objects.count() == 1 and Message.objects.count() == 2


def test_a_session_is_one_conversation_with_or_without_a_key_and_each_message_bumps_it(taught_intents):
    services.answer_message(text="hi", session="desk")  # no storefront key (staff)
    first = Conversation.objects.get()
    services.answer_message(text="refund please", session="desk")
    services.answer_message(text="hi", session="other")

    again = Conversation.objects.get(session="desk")
    assert Conversation.objects.count() == 2 and again.pk == first.pk and again.messages.count() == 2
    assert again.updated_at > first.updated_at and again.created_at == first.created_at


def test_a_message_costs_two_statements_and_an_edited_answer_is_served_at_once(taught_intents):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    greeting, _ = taught_intents
    services.answer_message(text="hello there", session="s1")
    greeting.answer = "Hi! What can I do for you?"
    greeting.save()  # as the admin saves it
    reply = services.answer_message(text="hello there", session="s1")

    with CaptureQueriesContext(connection) as queries:
        services.answer_message(text="hi", session="s1")

    assert reply.intent == "greeting" and reply.answer == "Hi! What can I do for you?"
    assert [q["sql"].split()[2] for q in queries.captured_queries] == ['"chatbot_conversation"', '"chatbot_message"']


def test_message_endpoint_needs_a_storefront_key(api_client, taught_intents):
    assert api_client.post(URL, {"text": "hi", "session": "abc"}, format="json").status_code in (401, 403)


@pytest.mark.parametrize(
    "payload",
    [
        {"text": "", "session": "s"},
        {"text": "   ", "session": "s"},
        {"text": "x" * 100_000, "session": "s"},
        {"text": "bin\x00\x01\x02ary", "session": "s"},
        {"text": "hi"},
        {"text": ["not", "text"], "session": "s"},
        {"text": "hi", "session": "s" * 500},
    ],
    ids=["empty", "blank", "100k-chars", "binary", "no-session", "list", "long-session"],
)
def test_bad_input_gets_a_400_naming_the_field(storefront_client, taught_intents, payload):
    response = storefront_client.post(URL, payload, format="json")

    assert response.status_code == 400
    assert set(response.json()) <= {"text", "session"}
    assert Message.objects.count() == 0


def test_junk_bodies_get_a_400(storefront_client, taught_intents):
    response = storefront_client.generic("POST", URL, b"\xff\xfe\x00junk", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("text", ["¿Dónde está mi tarjeta?", "我的卡在哪里", "🙂🙂💳❓", "ok"])
def test_other_languages_and_emoji_get_an_answer_not_an_error(storefront_client, taught_intents, text):
    response = storefront_client.post(URL, {"text": text, "session": "intl"}, format="json")

    assert response.status_code == 200
    assert response.json()["outcome"] in ("answered", "clarify", "out_of_scope")


def test_without_any_classifier_the_answer_is_the_fallback_with_hand_off(storefront_client, tiny_active_version):
    body = storefront_client.post(URL, {"text": "hello", "session": "s"}, format="json").json()

    assert body["outcome"] == "out_of_scope" and body["intent"] is None and body["hand_off"] is True
    assert Message.objects.get().review_status == Message.Review.PENDING


def test_out_of_scope_message_is_answered_with_fallback_and_queued_for_review(taught_intents):
    from chatbot.ml import IntentClassifier

    version = services.backbone_services.get_active_version()
    classifier = services.classifier_for(version)
    assert isinstance(classifier, IntentClassifier)
    classifier.threshold = 1.01  # nothing is confident enough: everything is out of scope
    try:
        reply = services.answer_message(text="what is the weather on mars", session="s")
    finally:
        services.reset_caches()
    assert reply.outcome == "out_of_scope" and reply.intent is None and reply.hand_off
    assert Message.objects.review_queue().count() == 1


def test_confirming_a_message_turns_it_into_a_training_example(taught_intents):
    reply = services.answer_message(text="good evening friends", session="s")
    message = services.review_message(message_id=reply.message_id)

    assert message.review_status == Message.Review.CONFIRMED
    assert IntentExample.objects.filter(text="good evening friends", source="review").count() == 1


def test_relabelling_a_message_teaches_the_chosen_intent(taught_intents, staff_user):
    greeting, refund = taught_intents
    reply = services.answer_message(text="my parcel never came, money back", session="s")
    before = IntentPrototype.objects.get(intent=refund).updated_at

    message = services.review_message(message_id=reply.message_id, intent_id=refund.pk, user=staff_user)

    expected = Message.Review.CONFIRMED if reply.intent == "refund" else Message.Review.RELABELLED
    assert message.review_status == expected and message.reviewed_by == staff_user
    assert refund.examples.filter(source="review").count() == 1
    assert IntentPrototype.objects.get(intent=refund).updated_at > before  # served at once


def test_dismissed_messages_leave_the_queue(taught_intents):
    reply = services.answer_message(text="asdf qwerty", session="s")
    Message.objects.filter(pk=reply.message_id).update(review_status=Message.Review.PENDING)

    assert services.dismiss_messages(message_ids=[reply.message_id]) == 1
    assert Message.objects.review_queue().count() == 0


def test_staff_teach_an_intent_through_the_api(staff_client, tiny_active_version):
    response = staff_client.post(
        "/api/v1/chat/intents",
        {"name": "opening_hours", "examples": ["when are you open", "opening hours?"], "answer": "9 to 5"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["examples"] == 2
    assert Intent.objects.get(name="opening_hours").answer == "9 to 5"
    assert IntentPrototype.objects.filter(intent__name="opening_hours").count() == 1


def test_storefront_cannot_teach_intents(storefront_client, tiny_active_version):
    response = storefront_client.post("/api/v1/chat/intents", {"name": "x", "examples": ["y"]}, format="json")
    assert response.status_code in (401, 403)


def test_refresh_prototypes_task_run_twice_writes_once(taught_intents):
    from chatbot.tasks import refresh_prototypes

    IntentPrototype.objects.all().delete()
    version_id = services.backbone_services.get_active_version().pk
    assert refresh_prototypes(version_id) == 2
    assert refresh_prototypes(version_id) == 0
    assert IntentPrototype.objects.count() == 2


def test_review_queue_admin_relabels_through_the_service(client, staff_user, taught_intents):
    greeting, refund = taught_intents
    reply = services.answer_message(text="hello hello", session="s")
    client.force_login(staff_user)

    url = reverse("admin:chatbot_message_change", args=[reply.message_id])
    assert client.get(url).status_code == 200
    response = client.post(url, {"reviewed_intent": refund.pk, "_save": "Save"})

    assert response.status_code == 302
    assert Message.objects.get(pk=reply.message_id).reviewed_intent == refund
    assert refund.examples.filter(text="hello hello").exists()


def test_trained_head_serves_its_intents_and_taught_ones_join_it(tiny_active_version, tmp_path):
    """A version folder with heads/intents (as a training job writes it) is what answers."""
    import shutil

    from backbone.encoder import Encoder
    from backbone.multitask import MultiTaskTrainer, TrainingConfig, save_head
    from chatbot.ml import IntentTask

    texts = [f"{w} my card please {i}" for w in ("block", "activate") for i in range(6)]
    labels = [w for w in ("block", "activate") for _ in range(6)]
    for name in ("block", "activate"):
        Intent.objects.create(name=name, dataset="banking77", answer=f"answer for {name}")
    folder = tmp_path / "version"
    shutil.copytree(tiny_active_version.path, folder)
    task = IntentTask((texts, labels), val_fraction=0.34, seed=1)
    encoder = Encoder.load(folder, device="cpu")
    result = MultiTaskTrainer(encoder, [task], TrainingConfig(epochs=1, batch_size=4)).fit()
    save_head(folder / "heads" / "intents", result.heads["intents"], task.head_config())
    tiny_active_version.path = str(folder)
    tiny_active_version.save(update_fields=["path"])
    services.backbone_services.reset_caches()

    reply = services.answer_message(text="block my card please", session="s")
    assert {reply.intent, *(a["intent"] for a in reply.alternatives)} <= {"block", "activate", None}

    services.teach_intent(name="opening_hours", examples=["when do you open", "opening hours"])
    classifier = services.classifier_for(tiny_active_version)
    assert classifier.all_labels == ["activate", "block", "opening_hours"]
    assert IntentPrototype.objects.filter(intent__name="block").count() == 0  # the head knows it


@pytest.mark.slow
def test_one_taught_intent_does_not_capture_every_message(staff_client, storefront_client, packaged_version):
    from tests.chatbot.conftest import OPENING_HOURS

    taught = staff_client.post(
        "/api/v1/chat/intents", {"name": "opening_hours", "examples": OPENING_HOURS}, format="json"
    )
    assert taught.status_code == 201

    def ask(text: str) -> dict:
        return storefront_client.post(URL, {"text": text, "session": "one-intent"}, format="json").json()

    hours = ask("what time do you open on saturday")
    assert hours["intent"] == "opening_hours" and 0.5 < hours["confidence"] < 1.0
    for text in ["my card payment was declined", "can I return these shoes", "what's the weather like tomorrow"]:
        body = ask(text)
        assert (body["intent"], body["outcome"], body["hand_off"]) == (None, "out_of_scope", True), text
        assert body["confidence"] < 0.5
