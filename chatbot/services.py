"""Chatbot operations: classify and answer messages, review them, teach new intents, retrain."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from backbone import services as backbone_services
from backbone.models import ModelVersion, TrainingJob
from chatbot.ml import RECIPE, IntentClassifier, IntentTask, class_prototypes, stratified_sample
from chatbot.models import Conversation, Intent, IntentExample, IntentPrototype, Message

logger = logging.getLogger(__name__)

CLARIFY_MARGIN = 0.15  # top two calibrated probabilities closer than this: ask which one
REVIEW_CONFIDENCE = 0.5  # answered, but below this calibrated confidence: goes to the review queue
PROTOTYPE_EXAMPLES = 64  # examples per intent averaged into its prototype
FALLBACK_ANSWER = "Sorry, I can't help with that here. Let me pass you to a colleague."
DEFAULT_ANSWER = "Thanks, I understand you asked about: {label}. A colleague will follow up if needed."
CLARIFY_ANSWER = "Did you mean {first} or {second}?"
_CACHE_LOCK = threading.Lock()
_CLASSIFIERS: dict[tuple, IntentClassifier | None] = {}
_REFRESH_ASKED: set[int] = set()


def build_intent_task(parameters: dict[str, Any]) -> IntentTask:
    """Build the intent task from stored examples (optionally one ``intent_dataset``).

    Uses stored ``val`` examples as validation when there are any, else carves a share of train
    (``RECIPE["val_fraction"]``).
    ``max_examples`` caps the training examples (stratified). Out-of-scope examples, where the
    dataset has them, train an out-of-scope class that the threshold complements.
    """
    rows = IntentExample.objects.select_related("intent")
    if parameters.get("intent_dataset"):
        rows = rows.filter(intent__dataset__in=[parameters["intent_dataset"], ""])
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
        **{k: float(parameters.get(k, RECIPE[k])) for k in ("val_fraction", "label_smoothing", "lexical_weight")},
    )


def start_intent_training(*, dataset: str = "", parameters: dict[str, Any] | None = None, user=None) -> TrainingJob:
    """Queue a fine-tune of the backbone with the intent head (activated when it succeeds).

    Side effects: a TrainingJob row and a Celery message on the training queue (on commit).
    """
    recipe = {k: RECIPE[k] for k in ("epochs", "lr", "head_lr", "batch_size", "freeze_word_embeddings")}
    params = {**recipe, "activate": True, **(parameters or {})}
    if dataset:
        params["intent_dataset"] = dataset
    return backbone_services.start_training_job(tasks=["intents"], parameters=params, user=user)


# --- the serving classifier -----------------------------------------------------------------


def head_folder(version: ModelVersion) -> Path:
    return Path(version.path) / "heads" / "intents"


def _prototype_stamp(version: ModelVersion) -> tuple:
    stamp = IntentPrototype.objects.filter(version=version).aggregate(n=Count("id"), last=Max("updated_at"))
    return (stamp["n"], stamp["last"])


def classifier_for(version: ModelVersion) -> IntentClassifier | None:
    """The classifier of ``version``: its trained head (if any) plus stored prototypes of intents
    the head does not know. Cached per process until a prototype of the version changes."""
    key = (version.pk, *_prototype_stamp(version))
    with _CACHE_LOCK:
        if key in _CLASSIFIERS:
            return _CLASSIFIERS[key]
    classifier = _build_classifier(version)
    with _CACHE_LOCK:
        for stale in [k for k in _CLASSIFIERS if k[0] == version.pk]:
            del _CLASSIFIERS[stale]
        _CLASSIFIERS[key] = classifier
    return classifier


def _build_classifier(version: ModelVersion) -> IntentClassifier | None:
    head = IntentClassifier.load(head_folder(version)) if (head_folder(version) / "config.json").exists() else None
    candidates = prototype_candidates(head)
    rows = [
        (name, np.asarray(vec, dtype=np.float32))
        for name, vec in IntentPrototype.objects.filter(version=version, intent__in=candidates)
        .order_by("intent__name")
        .values_list("intent__name", "embedding")
    ]
    if version.pk not in _REFRESH_ASKED and candidates.exclude(prototypes__version=version).exists():
        # e.g. a version activated after operators taught intents: let a worker embed them (once per process)
        _REFRESH_ASKED.add(version.pk)
        transaction.on_commit(lambda: _enqueue_refresh(version.pk))
    if head is None and not rows:
        return None
    labels = [name for name, _ in rows]
    vectors = np.stack([vec for _, vec in rows]) if rows else np.zeros((0, 0), dtype=np.float32)
    if head is None:
        return IntentClassifier.from_prototypes(labels, vectors)
    return head.with_extra(labels, vectors) if rows else head


def _enqueue_refresh(version_id: int) -> None:
    from chatbot.tasks import refresh_prototypes as task

    task.delay(version_id)


def prototype_candidates(head: IntentClassifier | None):
    """Intents served by prototype: with a trained head, the operator's intents (no dataset) it
    does not know; without one, every in-scope intent with training examples."""
    intents = Intent.objects.filter(is_out_of_scope=False, examples__split=IntentExample.Split.TRAIN)
    if head is not None:
        intents = intents.filter(dataset="").exclude(name__in=head.labels)
    return Intent.objects.filter(pk__in=intents.values("pk"))


def refresh_prototypes(*, version: ModelVersion | None = None, intent_ids: list[int] | None = None) -> int:
    """Compute and store prototypes (mean example embedding) for ``version`` (default: active).

    Only :func:`prototype_candidates`, and (without ``intent_ids``) only those lacking one. Side effects: upserts IntentPrototype rows. Returns how many were written.
    """
    active, encoder = backbone_services.active_encoder()
    if version is None:
        version = active
    elif version.pk != active.pk:
        encoder = backbone_services.load_encoder(version)
    folder = head_folder(version)
    intents = prototype_candidates(IntentClassifier.load(folder) if (folder / "config.json").exists() else None)
    if intent_ids is not None:
        intents = intents.filter(pk__in=intent_ids)
    else:
        intents = intents.exclude(prototypes__version=version)
    written = 0
    for intent in intents:
        texts = list(
            intent.examples.filter(split=IntentExample.Split.TRAIN)
            .order_by("-id")
            .values_list("text", flat=True)[:PROTOTYPE_EXAMPLES]
        )
        vector = class_prototypes(encoder.encode(texts), [0] * len(texts), 1)[0]
        IntentPrototype.objects.update_or_create(
            intent=intent, version=version, defaults={"embedding": vector, "n_examples": len(texts)}
        )
        written += 1
    return written


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


def classify_texts(texts: list[str]) -> tuple[ModelVersion, IntentClassifier | None, np.ndarray | None]:
    """(active version, its classifier, calibrated probabilities over ``classifier.all_labels``).

    The texts are encoded by the int8 copy of the backbone when ``CHATBOT_INT8_ENCODER`` is on.
    """
    if settings.CHATBOT_INT8_ENCODER:
        version, encoder = backbone_services.active_int8_encoder()
    else:
        version, encoder = backbone_services.active_encoder()
    classifier = classifier_for(version)
    if classifier is None:
        return version, None, None
    return version, classifier, classifier.predict_proba(encoder.encode(texts), texts)


def answer_message(*, text: str, session: str, storefront_key=None) -> Reply:
    """Classify a shopper's message, decide the answer, store it in the conversation.

    Out of scope (the out-of-scope class, or top probability under the threshold): fallback
    answer and hand-off. Top two within ``CLARIFY_MARGIN``: ask which. Low confidence and
    out-of-scope messages go to the review queue. Side effects: Conversation and Message rows.
    """
    version, classifier, probs = classify_texts([text])
    alternatives: list[dict[str, Any]] = []
    intent: Intent | None = None
    confidence = 0.0
    if classifier is None:
        outcome = Message.Outcome.OUT_OF_SCOPE
    else:
        p = probs[0]
        order = np.argsort(-p)[:4]
        labels = classifier.all_labels
        ranked = [(labels[i], round(float(p[i]), 4)) for i in order]
        confidence = ranked[0][1]
        by_name = Intent.objects.in_bulk([name for name, _ in ranked], field_name="name")
        intent = by_name.get(ranked[0][0])
        alternatives = [{"intent": name, "confidence": c} for name, c in ranked[1:4]]
        if bool(classifier.is_out_of_scope(probs)[0]) or intent is None or intent.is_out_of_scope:
            outcome = Message.Outcome.OUT_OF_SCOPE
        elif len(ranked) > 1 and ranked[0][1] - ranked[1][1] < CLARIFY_MARGIN:
            outcome = Message.Outcome.CLARIFY
        else:
            outcome = Message.Outcome.ANSWERED
    if outcome == Message.Outcome.OUT_OF_SCOPE:
        answer, hand_off = FALLBACK_ANSWER, True
    elif outcome == Message.Outcome.CLARIFY:
        answer = CLARIFY_ANSWER.format(first=humanize(intent.name), second=humanize(alternatives[0]["intent"]))
        hand_off = False
    else:
        answer = intent.answer or DEFAULT_ANSWER.format(label=humanize(intent.name))
        hand_off = intent.hand_off
    needs_review = outcome != Message.Outcome.ANSWERED or confidence < REVIEW_CONFIDENCE
    with transaction.atomic():
        conversation, _ = Conversation.objects.get_or_create(storefront_key=storefront_key, session=session)
        message = Message.objects.create(
            conversation=conversation,
            text=text,
            intent=intent,
            confidence=confidence,
            alternatives=alternatives,
            outcome=outcome,
            hand_off=hand_off,
            answer=answer,
            version=version,
            review_status=Message.Review.PENDING if needs_review else Message.Review.NOT_NEEDED,
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
    return Reply(
        message_id=message.pk,
        intent=None if outcome == Message.Outcome.OUT_OF_SCOPE else intent.name,
        confidence=confidence,
        alternatives=alternatives,
        outcome=outcome,
        answer=answer,
        hand_off=hand_off,
        version=version.name,
    )


def humanize(label: str) -> str:
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
