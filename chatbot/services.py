"""Chatbot operations. This issue: the intent training task for the shared trainer."""

from __future__ import annotations

from typing import Any

from chatbot.ml import IntentTask, stratified_sample
from chatbot.models import IntentExample


def build_intent_task(parameters: dict[str, Any]) -> IntentTask:
    """Build the intent task from stored examples (optionally one ``intent_dataset``).

    Uses stored ``val`` examples as validation when there are any, else carves 10% of train.
    ``max_examples`` caps the training examples (stratified). Out-of-scope examples are left
    out of the classifier (the chatbot issue adds out-of-scope detection).
    """
    rows = IntentExample.objects.filter(intent__is_out_of_scope=False).select_related("intent")
    if parameters.get("intent_dataset"):
        rows = rows.filter(intent__dataset=parameters["intent_dataset"])
    train, val = ([], []), ([], [])
    for text, label, split in rows.order_by("id").values_list("text", "intent__name", "split"):
        target = val if split == IntentExample.Split.VAL else train
        target[0].append(text)
        target[1].append(label)
    if not train[0]:
        raise ValueError("no intent examples stored; run: manage.py import_dataset banking77 --data-dir DIR")
    seed = int(parameters.get("seed", 13))
    if parameters.get("max_examples"):
        keep = stratified_sample(train[1], int(parameters["max_examples"]), seed)
        train = ([train[0][i] for i in keep], [train[1][i] for i in keep])
        if val[0]:
            keep = stratified_sample(val[1], max(1, int(parameters["max_examples"]) // 5), seed)
            val = ([val[0][i] for i in keep], [val[1][i] for i in keep])
    return IntentTask(train, val if val[0] else None, seed=seed)
