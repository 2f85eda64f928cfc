"""Chatbot operations: classify and answer messages, review them, teach new intents, and the
chatbot's part of a training job (what it trains on; its prototypes on a new backbone version)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Count, Max, QuerySet
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from backbone import services as backbone_services
from backbone.models import ModelVersion
from backbone.queue import enqueue_on_commit, one_at_a_time
from backbone.recheck import Rechecked
from chatbot.classifier import IntentClassifier, Prediction, class_prototypes, encode_messages, similarity_threshold
from chatbot.ml import RECIPE, TASK_PARAMETERS, IntentTask, stratified_sample
from chatbot.models import Conversation, Intent, IntentExample, IntentPrototype, Message

logger = logging.getLogger(__name__)

CLARIFY_MARGIN = 0.15  # top two calibrated probabilities closer than this: ask which one
REVIEW_CONFIDENCE = 0.5  # answered, but below this calibrated confidence: goes to the review queue
PROTOTYPE_EXAMPLES = 64  # examples per intent averaged into its prototype
FALLBACK_ANSWER = "Sorry, I can't help with that here. Let me pass you to a colleague."
DEFAULT_ANSWER = "Thanks, I understand you asked about: {label}. A colleague will follow up if needed."
CLARIFY_ANSWER = "Did you mean {first} or {second}?"
VALIDATION_LIMIT = 2000  # validation examples a scheduled retraining's gate classifies (by id)
MIN_VALIDATION = 20
_CACHE_LOCK = threading.Lock()
_CLASSIFIERS: dict[tuple, IntentClassifier | None] = {}
_REFRESH_ASKED: set[int] = set()


# --- training ---------------------------------------------------------------------------------


def training_examples(dataset: str = "") -> QuerySet[IntentExample]:
    """Training and validation examples of the intent head: every dataset's, or ``dataset``'s and
    the operators' (intents without a dataset)."""
    rows = IntentExample.objects.all()
    if dataset:
        rows = rows.filter(intent__dataset__in=[dataset, ""])
    return rows


def training_summary() -> str:
    """One line on what the intent head would train on; "" with fewer than two intents (a single
    taught intent is served by its prototype: a head over one label would answer it for everything)."""
    per_dataset = (
        training_examples()
        .filter(split=IntentExample.Split.TRAIN)
        .values("intent__dataset")
        .annotate(intents=Count("intent", distinct=True), examples=Count("id"))
        .order_by("intent__dataset")
    )
    if sum(row["intents"] for row in per_dataset) < 2:
        return ""
    return "; ".join(
        f"{row['intent__dataset'] or 'taught'}: {row['intents']} intents, {row['examples']:,} examples"
        for row in per_dataset
    )


def build_intent_task(parameters: dict[str, Any]) -> IntentTask:
    """Build the intent task from stored examples (optionally one ``intent_dataset``).

    Uses stored ``val`` examples as validation when there are any, else carves a share of train
    (``RECIPE["val_fraction"]``).
    ``max_examples`` caps the training examples (stratified). Out-of-scope examples, where the
    dataset has them, train an out-of-scope class that the threshold complements.
    """
    rows = training_examples(parameters.get("intent_dataset", ""))
    train, val = ([], []), ([], [])
    oos_label = None
    for text, label, split, is_oos in rows.order_by("id").values_list(
        "text", "intent__name", "split", "intent__is_out_of_scope"
    ):
        target = val if split == IntentExample.Split.VAL else train
        target[0].append(text)
        target[1].append(label)
        if is_oos:
            oos_label = label
    if not train[0]:
        raise ValueError("no intent examples stored; run: manage.py import_dataset banking77 --data-dir DIR")
    seed = int(parameters.get("seed", 13))
    if parameters.get("max_examples"):
        keep = stratified_sample(train[1], int(parameters["max_examples"]), seed)
        train = ([train[0][i] for i in keep], [train[1][i] for i in keep])
        if val[0]:
            keep = stratified_sample(val[1], max(1, int(parameters["max_examples"]) // 5), seed)
            val = ([val[0][i] for i in keep], [val[1][i] for i in keep])
    # An intent with examples only in val (or only in train) would leave a label unseen: carve instead.
    use_val = bool(val[0]) and set(val[1]) <= set(train[1])
    return IntentTask(
        train,
        val if use_val else None,
        seed=seed,
        oos_label=oos_label,
        **{k: float(parameters.get(k, RECIPE[k])) for k in TASK_PARAMETERS},
    )


def training_parameters(*, dataset: str = "") -> dict[str, Any]:
    """The intent recipe's training parameters (``chatbot.ml.RECIPE``), for one ``dataset`` if given:
    what the admin's Retrain passes to ``backbone.services.start_training_job``."""
    params: dict[str, Any] = dict(RECIPE)
    if dataset:
        params["intent_dataset"] = dataset
    return params


def fit_for_version(*, version: ModelVersion, parameters: dict[str, Any], job_id: int, progress) -> None:
    """The chatbot's app step of a training job: prototypes on backbone ``version`` (not yet active)
    for the intents its head does not know. Returns None: the head is in the version itself."""
    progress(0.0, f"intent prototypes on {version.name}")
    written = refresh_prototypes(version=version)
    progress(1.0, f"{written} intent prototype(s) on {version.name}")


# --- the serving classifier -----------------------------------------------------------------


def head_folder(version: ModelVersion) -> Path:
    """Where ``version`` keeps its trained intent head (absent when it was trained without one)."""
    return Path(version.path) / "heads" / "intents"


def load_head(version: ModelVersion) -> IntentClassifier | None:
    """The trained intent head of ``version``, or None."""
    folder = head_folder(version)
    return IntentClassifier.load(folder) if (folder / "config.json").exists() else None


def _read_prototype_stamp(version_pk: int) -> tuple:
    row = IntentPrototype.objects.filter(version_id=version_pk).aggregate(n=Count("id"), last=Max("updated_at"))
    return (row["n"], row["last"])


# (count, newest update) of a version's prototypes: re-read as often as the active version is, not per message
PROTOTYPE_STAMPS = Rechecked(_read_prototype_stamp, backbone_services.ACTIVE_CHECK_SECONDS)
# every intent by name (answers, hand-off, scope), likewise
INTENTS = Rechecked(
    lambda: {intent.name: intent for intent in Intent.objects.all()}, backbone_services.ACTIVE_CHECK_SECONDS
)


def classifier_for(version: ModelVersion) -> IntentClassifier | None:
    """The classifier of ``version``: its trained head (if any) plus stored prototypes of intents
    the head does not know. Cached per process until a prototype of the version changes."""
    key = (version.pk, *PROTOTYPE_STAMPS.get(version.pk))
    with _CACHE_LOCK:
        if key in _CLASSIFIERS:
            return _CLASSIFIERS[key]
    classifier = _build_classifier(version)
    with _CACHE_LOCK:
        for stale in [k for k in _CLASSIFIERS if k[0] == version.pk]:
            del _CLASSIFIERS[stale]
        _CLASSIFIERS[key] = classifier
    return classifier


def reset_caches() -> None:
    """Forget this process's classifiers (tests; after changing a version's files in place)."""
    with _CACHE_LOCK:
        _CLASSIFIERS.clear()
        _REFRESH_ASKED.clear()
    PROTOTYPE_STAMPS.forget()
    INTENTS.forget()


def _build_classifier(version: ModelVersion) -> IntentClassifier | None:
    head = load_head(version)
    candidates = prototype_candidates(head)
    rows = list(
        IntentPrototype.objects.filter(version=version, intent__in=candidates)
        .order_by("intent__name")
        .values_list("intent__name", "embedding", "threshold")
    )
    if version.pk not in _REFRESH_ASKED and candidates.exclude(prototypes__version=version).exists():
        # e.g. a version activated after operators taught intents: let a worker embed them (once per process)
        _REFRESH_ASKED.add(version.pk)
        enqueue_on_commit("chatbot.refresh_prototypes", version.pk)
    if head is None and not rows:
        return None
    labels = [name for name, _, _ in rows]
    vectors = np.stack([np.asarray(vec, dtype=np.float32) for _, vec, _ in rows]) if rows else None
    if head is None:
        return IntentClassifier.from_prototypes(labels, vectors, [threshold for _, _, threshold in rows])
    return head.with_extra(labels, vectors) if rows else head


def prototype_candidates(head: IntentClassifier | None) -> QuerySet[Intent]:
    """Intents served by prototype: with a trained head, the operator's intents (no dataset) it
    does not know; without one, every in-scope intent with training examples."""
    intents = Intent.objects.filter(is_out_of_scope=False, examples__split=IntentExample.Split.TRAIN)
    if head is not None:
        intents = intents.filter(dataset="").exclude(name__in=head.labels)
    return Intent.objects.filter(pk__in=intents.values("pk"))


def refresh_prototypes(*, version: ModelVersion | None = None, intent_ids: list[int] | None = None) -> int:
    """Compute and store prototypes (mean example embedding, similarity threshold) on ``version``
    (default: the active one), with that version's own encoder.

    Only :func:`prototype_candidates`, and (without ``intent_ids``) only those lacking one.
    Side effects: upserts IntentPrototype rows. Returns how many were written.
    """
    if version is None:
        version, encoder = backbone_services.active_encoder()
    else:
        encoder = backbone_services.version_encoder(version)
    with one_at_a_time(f"chatbot.prototypes.{version.pk}"):  # concurrent refreshes never encode an intent twice
        intents = prototype_candidates(load_head(version))
        if intent_ids is not None:
            intents = intents.filter(pk__in=intent_ids)
        else:
            intents = intents.exclude(prototypes__version=version)
        return sum(_store_prototype(intent, version, encoder) for intent in intents)


def _store_prototype(intent: Intent, version: ModelVersion, encoder) -> int:
    """Upsert ``intent``'s prototype on ``version`` from its newest training examples; return 1."""
    texts = list(
        intent.examples.filter(split=IntentExample.Split.TRAIN)
        .order_by("-id")
        .values_list("text", flat=True)[:PROTOTYPE_EXAMPLES]
    )
    embeddings = encoder.encode(texts)
    IntentPrototype.objects.update_or_create(
        intent=intent,
        version=version,
        defaults={
            "embedding": class_prototypes(embeddings, [0] * len(texts), 1)[0],
            "threshold": similarity_threshold(embeddings),
            "n_examples": len(texts),
        },
    )
    PROTOTYPE_STAMPS.forget(version.pk)  # this process serves it at once (the others within seconds)
    return 1


def schedule_prototypes() -> None:
    """After commit, let a worker compute the missing prototypes on the active version (a small
    task on the default queue: it makes imported intents answer before any training)."""
    enqueue_on_commit("chatbot.refresh_prototypes", backbone_services.get_active_version().pk)


@transaction.atomic
def teach_intent(*, name: str, examples: list[str], answer: str = "", hand_off: bool = False) -> Intent:
    """Create (or extend) an operator intent from a few examples; it answers at once as a prototype.

    Side effects: Intent and IntentExample rows, its prototype for the active version.
    """
    intent, _ = Intent.objects.get_or_create(name=name, defaults={"answer": answer, "hand_off": hand_off})
    add_examples(intent=intent, texts=examples, source="operator")
    return intent


def add_examples(*, intent: Intent, texts: list[str], source: str) -> int:
    """Store training examples for ``intent`` and refresh its prototype if the head does not know it.

    Call inside a transaction. Returns how many examples were new.
    """
    created = 0
    for text in {t.strip() for t in texts if t.strip()}:
        _, new = IntentExample.objects.get_or_create(
            intent=intent, text=text, split=IntentExample.Split.TRAIN, defaults={"source": source}
        )
        created += new
    if not intent.is_out_of_scope:
        refresh_prototypes(intent_ids=[intent.pk])
    return created


# --- answering --------------------------------------------------------------------------------


@dataclass
class Reply:
    """What the chat endpoint answers."""

    message_id: int
    intent: str | None
    confidence: float
    alternatives: list[dict[str, Any]]
    outcome: str
    answer: str
    hand_off: bool
    version: str
    extra: dict[str, Any] = field(default_factory=dict)


def validate_version(*, version: ModelVersion, row=None) -> tuple[str, float, int] | None:
    """The share of validation examples (split ``val``, the first VALIDATION_LIMIT by id) that chat,
    served by ``version``, answers with their intent (an out-of-scope example: out of scope); the
    chatbot's score in a scheduled retraining's gate. None with fewer than MIN_VALIDATION examples."""
    examples = list(
        IntentExample.objects.filter(split=IntentExample.Split.VAL)
        .order_by("id")
        .values_list("text", "intent__name", "intent__is_out_of_scope")[:VALIDATION_LIMIT]
    )
    classifier = classifier_for(version)
    if len(examples) < MIN_VALIDATION or classifier is None:
        return None
    encoder = backbone_services.serving_encoder(version)  # as chat serves it
    texts = [text for text, _, _ in examples]
    predictions = classifier.predict(encode_messages(encoder, texts), texts)
    correct = sum(p.intent == (None if oos else name) for p, (_, name, oos) in zip(predictions, examples, strict=True))
    return "accuracy", correct / len(examples), len(examples)


def predict_message(text: str) -> tuple[ModelVersion, Prediction | None]:
    """(active version, what its classifier makes of ``text``; None when it has no classifier).

    Encoded by the serving encoder (``backbone.services.active_serving_encoder``).
    """
    version, encoder = backbone_services.active_serving_encoder()
    classifier = classifier_for(version)
    if classifier is None:
        return version, None
    return version, classifier.predict(encode_messages(encoder, [text]), [text])[0]


def intent_named(name: str) -> Intent | None:
    """The stored intent ``name`` (:data:`INTENTS`; re-read at once for a name it lacks: intents
    imported in bulk send no signal)."""
    intent = INTENTS.get().get(name)
    if intent is None:
        INTENTS.forget()
        intent = INTENTS.get().get(name)
    return intent


@receiver([post_save, post_delete], sender=Intent)
def forget_intents(**_) -> None:
    """Re-read the intents at the next message (an intent saved or deleted in this process)."""
    INTENTS.forget()


def decide(prediction: Prediction | None, intent: Intent | None) -> tuple[str, str, bool]:
    """(outcome, answer, hand-off) for a prediction whose top label is the stored ``intent``: out
    of scope (or no such intent stored) gets the fallback and a hand-off; top two within
    ``CLARIFY_MARGIN`` a question; else the intent's answer."""
    if prediction is None or prediction.intent is None or intent is None or intent.is_out_of_scope:
        return Message.Outcome.OUT_OF_SCOPE, FALLBACK_ANSWER, True
    ranked = prediction.ranked
    if len(ranked) > 1 and ranked[0][1] - ranked[1][1] < CLARIFY_MARGIN:
        question = CLARIFY_ANSWER.format(first=humanize(intent.name), second=humanize(ranked[1][0]))
        return Message.Outcome.CLARIFY, question, False
    return (
        Message.Outcome.ANSWERED,
        intent.answer or DEFAULT_ANSWER.format(label=humanize(intent.name)),
        intent.hand_off,
    )


def answer_message(*, text: str, session: str, storefront_key=None) -> Reply:
    """Classify a shopper's message, decide the answer (:func:`decide`), store it in the conversation.

    Low-confidence and unanswered messages go to the review queue; the stored intent is the top
    label, also when out of scope (what a reviewer confirms or corrects). Side effects:
    Conversation and Message rows.
    """
    version, prediction = predict_message(text)
    predicted = intent_named(prediction.ranked[0][0]) if prediction else None
    outcome, answer, hand_off = decide(prediction, predicted)
    confidence = prediction.confidence if prediction else 0.0
    alternatives = [{"intent": name, "confidence": c} for name, c in (prediction.ranked[1:] if prediction else [])]
    needs_review = outcome != Message.Outcome.ANSWERED or confidence < REVIEW_CONFIDENCE
    conversation = Conversation(storefront_key=storefront_key, session=session)
    Conversation.objects.bulk_create(  # one upsert, where get_or_create and an update took three statements
        [conversation], update_conflicts=True, unique_fields=["storefront_key", "session"], update_fields=["updated_at"]
    )
    message = Message.objects.create(
        conversation=conversation,
        text=text,
        intent=predicted,
        confidence=confidence,
        alternatives=alternatives,
        outcome=outcome,
        hand_off=hand_off,
        answer=answer,
        version=version,
        review_status=Message.Review.PENDING if needs_review else Message.Review.NOT_NEEDED,
    )
    return Reply(
        message_id=message.pk,
        intent=None if outcome == Message.Outcome.OUT_OF_SCOPE else predicted.name,
        confidence=confidence,
        alternatives=alternatives,
        outcome=outcome,
        answer=answer,
        hand_off=hand_off,
        version=version.name,
    )


def humanize(label: str) -> str:
    """An intent name as a shopper reads it (``clinc150:card_arrival`` -> ``card arrival``)."""
    return label.rsplit(":", 1)[-1].replace("_", " ")


# --- review -----------------------------------------------------------------------------------


@transaction.atomic
def review_message(*, message_id: int, intent_id: int | None = None, user=None) -> Message:
    """Confirm a message's predicted intent (``intent_id`` None) or relabel it; either way it
    becomes a training example (an out-of-scope label teaches the out-of-scope class).

    Side effects: the Message row, an IntentExample row, the intent's prototype if the head does not know it.
    """
    message = Message.objects.select_for_update().get(pk=message_id)
    target = Intent.objects.get(pk=intent_id) if intent_id is not None else message.intent
    if target is None:
        raise ValueError("this message has no predicted intent to confirm; choose one")
    relabelled = intent_id is not None and intent_id != message.intent_id
    message.review_status = Message.Review.RELABELLED if relabelled else Message.Review.CONFIRMED
    message.reviewed_intent = target
    message.reviewed_by = user
    message.reviewed_at = timezone.now()
    message.save(update_fields=["review_status", "reviewed_intent", "reviewed_by", "reviewed_at"])
    add_examples(intent=target, texts=[message.text], source="review")
    return message


def dismiss_messages(*, message_ids: list[int], user=None) -> int:
    """Take messages off the review queue without teaching anything. Returns how many."""
    return Message.objects.filter(pk__in=message_ids, review_status=Message.Review.PENDING).update(
        review_status=Message.Review.DISMISSED, reviewed_by=user, reviewed_at=timezone.now()
    )
