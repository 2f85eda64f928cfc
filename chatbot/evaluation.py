"""``manage.py evaluate intents --dataset banking77|clinc150 --train-dir A --test-dir B``.

Trains on A (``train.csv``; for clinc150 also ``val.csv``), measures once on B's ``test.csv``.
The project's model: the backbone fine-tuned through the shared multi-task trainer with the
chatbot's intent task and recipe (prototype mix, temperature and out-of-scope threshold fitted on
the validation split: 5% of A's train.csv for banking77, A's val.csv for clinc150), measured as
chat answers (:func:`predict`): each message encoded alone by the encoder chat serves with (the
ONNX Runtime copy while ``BACKBONE_ONNX_SERVING`` is on; ``--set onnx_encoder=false`` measures with
PyTorch), a message under the threshold answered out of scope.
Baselines from the same run: TF-IDF + logistic regression, the frozen packaged encoder + logistic
regression, and plain fine-tuning (``--set plain_epochs=4``; 0 skips it: the same trainer and head
without the recipe's additions). Also measured: adding intents as prototypes from 10 examples each
without retraining.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings

from backbone.encoder import Encoder
from backbone.evaluation import log, read_table
from backbone.multitask import MultiTaskTrainer, TrainingConfig, TrainingResult
from backbone.onnx_encoder import OnnxEncoder
from backbone.services import base_model_path
from chatbot.baselines import baseline_metrics, frozen_baseline, tfidf_baseline
from chatbot.classifier import IntentClassifier, Prediction, class_prototypes, encode_messages
from chatbot.datasets import LABEL_COLUMN
from chatbot.importers import OUT_OF_SCOPE
from chatbot.metrics import prediction_metrics
from chatbot.ml import RECIPE, TASK_PARAMETERS, IntentTask, stratified_sample

# The training recipe is chatbot.ml.RECIPE; the encoder reads BACKBONE_MAX_LENGTH tokens, as in training jobs.
DEFAULTS = {
    **RECIPE,
    "layer_decay": 1.0,
    "new_intents": 5,
    "new_intent_examples": 10,
    "plain_epochs": 4,  # the reference: plain full fine-tuning of MiniLM for 4 epochs
}
REPORTED_TRAINING = (
    "epochs",
    "lr",
    "head_lr",
    "batch_size",
    "max_length",
    "label_smoothing",
    "layer_decay",
    "val_fraction",
    "lexical_weight",
    "review_quantile",
    "freeze_word_embeddings",
)
Examples = tuple[list[str], list[str]]


def read_examples(path: Path, label_column: str) -> Examples:
    """(texts, labels) of a CSV with ``text`` and ``label_column`` (texts stripped, empty rows skipped)."""
    texts, labels = [], []
    for row in read_table(path, ["text", label_column]):
        text = row["text"].strip()
        if text:
            texts.append(text)
            labels.append(row[label_column].strip())
    return texts, labels


def read_split(
    dataset: str, train_dir: Path, test_dir: Path, opts: dict[str, Any], seed: int
) -> tuple[Examples, Examples | None, Examples]:
    """(train, val or None, test) examples, capped by ``max_examples`` / ``limit_queries`` (stratified)."""
    column = LABEL_COLUMN[dataset]
    train = read_examples(train_dir / "train.csv", column)
    val = read_examples(train_dir / "val.csv", column) if dataset == "clinc150" else None
    test = read_examples(test_dir / "test.csv", column)
    if opts.get("max_examples"):
        keep = stratified_sample(train[1], int(opts["max_examples"]), seed)
        train = ([train[0][i] for i in keep], [train[1][i] for i in keep])
    if opts.get("limit_queries"):
        keep = stratified_sample(test[1], int(opts["limit_queries"]), seed)
        test = ([test[0][i] for i in keep], [test[1][i] for i in keep])
    return train, val, test


def run(*, dataset: str, train_dir: Path, test_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Train on ``train_dir``, measure on ``test_dir``; see the module docstring."""
    opts = {
        **DEFAULTS,
        "max_length": settings.BACKBONE_MAX_LENGTH,
        "onnx_encoder": settings.BACKBONE_ONNX_SERVING,  # measure what chat serves with
        **{k: v for k, v in options.items() if v is not None},
    }
    seed = int(opts.get("seed", 7))
    train, val, test = read_split(dataset, train_dir, test_dir, opts, seed)
    oos = OUT_OF_SCOPE if dataset == "clinc150" else None
    task = intent_task(train, val, oos, opts, seed)
    encoder = base_encoder(opts)
    log(f"{dataset}: {len(task.train_texts)} train, {len(task.val_texts)} val, {len(test[0])} test; {encoder.device}")
    baselines = measure_baselines(encoder, task, (train, val, test), oos, opts, seed)

    classifier, result = train_model(encoder, task, opts, seed)
    served = served_encoder(encoder, onnx=bool(opts["onnx_encoder"]))
    started = time.monotonic()
    predictions, test_emb = predict(classifier, served, test[0])
    log(f"predicted {len(test[0])} test messages one at a time ({time.monotonic() - started:.0f}s)")
    return {
        "n": len(test[0]),
        "metrics": prediction_metrics(predictions, test[1], classifier.oos_label),
        "served_encoder": "pytorch" if served is encoder else "onnx",
        "components": components(classifier, test, test_emb),
        "baselines": baselines,
        "validation": result.metrics["intents"],
        "calibration": task.calibration,
        "new_intent_without_retraining": new_intent_trial(encoder, classifier, task, test, test_emb, opts, seed),
        "training": {
            "steps": result.steps,
            "train_seconds": result.seconds,
            "steps_per_second": round(result.steps / max(result.seconds, 1e-9), 3),
            "device": str(encoder.device),
            "torch_threads": torch.get_num_threads(),
            **{k: opts[k] for k in REPORTED_TRAINING},
        },
    }


def train_model(
    encoder: Encoder, task: IntentTask, opts: dict[str, Any], seed: int
) -> tuple[IntentClassifier, TrainingResult]:
    """Fine-tune ``encoder`` in place with the intent task and the recipe, as a training job does;
    return the classifier that chat would build from the saved head, and the trainer's result."""
    result = MultiTaskTrainer(encoder, [task], training_config(opts, seed), progress=progress).fit()
    return IntentClassifier.from_head(result.heads["intents"], task.head_config()), result


def served_encoder(encoder: Encoder, *, onnx: bool) -> Encoder | OnnxEncoder:
    """The encoder chat would serve ``encoder``'s weights with: its ONNX Runtime copy on the CPU when
    ``onnx`` (as ``backbone.services.serving_encoder``), else ``encoder`` itself."""
    if not onnx or encoder.device.type != "cpu":
        return encoder
    with tempfile.TemporaryDirectory() as folder:  # the session holds the graph in memory
        return OnnxEncoder.from_encoder(encoder, Path(folder) / "encoder.onnx")


def predict(classifier: IntentClassifier, encoder: Encoder, texts: list[str]) -> tuple[list[Prediction], np.ndarray]:
    """What chat answers for each of ``texts`` (as ``POST /api/v1/chat/messages``), and their embeddings."""
    embeddings = encode_messages(encoder, texts)
    return classifier.predict(embeddings, texts), embeddings


def measure_baselines(
    encoder: Encoder, task: IntentTask, split: tuple, oos: str | None, opts: dict[str, Any], seed: int
) -> dict[str, dict[str, Any]]:
    """The same run's baselines on the test split (before ``encoder`` is fine-tuned)."""
    train, val, test = split
    started = time.monotonic()
    baselines = {"tfidf_logreg": tfidf_baseline(task, test, oos)}
    log(f"tfidf baseline {baselines['tfidf_logreg']} ({time.monotonic() - started:.0f}s)")
    baselines["frozen_encoder_logreg"] = frozen_baseline(encoder, task, test, oos)
    log(f"frozen baseline {baselines['frozen_encoder_logreg']} ({time.monotonic() - started:.0f}s)")
    if float(opts["plain_epochs"]) > 0:
        baselines["plain_fine_tune"] = plain_fine_tune(train, val, test, oos, opts, seed)
        log(f"plain fine-tune {baselines['plain_fine_tune']} ({time.monotonic() - started:.0f}s)")
    return baselines


def progress(fraction: float, message: str) -> None:
    log(f"[{fraction:.0%}] {message}")


def intent_task(train, val, oos: str | None, opts: dict[str, Any], seed: int, **overrides: float) -> IntentTask:
    """The intent task from the evaluation options (``overrides`` win); the same seed carves the same split."""
    task_options = {k: float(opts[k]) for k in TASK_PARAMETERS} | overrides
    return IntentTask(train, val, seed=seed, oos_label=oos, **task_options)


def base_encoder(opts: dict[str, Any]) -> Encoder:
    """A fresh copy of the packaged (base) encoder, as the options place it."""
    return Encoder.load(
        base_model_path(), device=opts.get("device", settings.BACKBONE_DEVICE), max_length=int(opts["max_length"])
    )


def training_config(opts: dict[str, Any], seed: int, **overrides: Any) -> TrainingConfig:
    """The shared trainer's settings from the evaluation options (``overrides`` win)."""
    return TrainingConfig(
        **{
            "epochs": float(opts["epochs"]),
            "batch_size": int(opts["batch_size"]),
            "lr": float(opts["lr"]),
            "head_lr": float(opts["head_lr"]),
            "layer_decay": float(opts["layer_decay"]),
            "freeze_word_embeddings": bool(opts["freeze_word_embeddings"]),
            "seed": seed,
            **overrides,
        }
    )


def plain_fine_tune(train, val, test, oos: str | None, opts: dict[str, Any], seed: int) -> dict[str, Any]:
    """Plain full fine-tuning of a fresh packaged encoder with the intent head, for ``plain_epochs``.

    The recipe minus its additions: every weight trained (word embeddings too), no label
    smoothing, no lexical model, no prototype mix, no temperature: argmax and softmax of the head.
    Same training/validation split, learning rates and batch size as the recipe.
    """
    task = intent_task(train, val, oos, opts, seed, label_smoothing=0.0, lexical_weight=0.0)
    encoder = base_encoder(opts)
    config = training_config(opts, seed, epochs=float(opts["plain_epochs"]), freeze_word_embeddings=False)
    result = MultiTaskTrainer(encoder, [task], config, progress=progress).fit()
    head = dataclasses.replace(
        IntentClassifier.from_head(result.heads["intents"], task.head_config()), proto_weight=0.0, temperature=1.0
    )
    probs = head.predict_proba(encoder.encode(test[0], batch_size=128))
    return {
        **baseline_metrics(probs, np.arange(len(task.labels)), task, test, oos),
        "epochs": float(opts["plain_epochs"]),
        "steps": result.steps,
        "train_seconds": result.seconds,
    }


def components(classifier: IntentClassifier, test: Examples, served_emb: np.ndarray) -> dict:
    """Test accuracy of the fine-tuned head without the lexical model, and of the lexical model alone."""
    gold = np.asarray(test[1])
    out = {}
    dense = dataclasses.replace(classifier, lexical=None, lexical_weight=0.0)
    out["fine_tuned_without_lexical"] = accuracy(dense.all_labels, dense.logits(served_emb), gold)
    if classifier.lexical is not None:
        out["lexical_alone"] = accuracy(classifier.labels, classifier.lexical.log_proba(test[0]), gold)
    return out


def accuracy(labels: list[str], scores: np.ndarray, gold: np.ndarray) -> float:
    return round(float((np.asarray(labels)[scores.argmax(axis=1)] == gold).mean()), 4)


def new_intent_trial(
    encoder: Encoder,
    classifier: IntentClassifier,
    task: IntentTask,
    test: tuple[list[str], list[str]],
    test_emb: np.ndarray,
    opts: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Drop some intents from the trained head and add them back as prototypes of 10 examples each.

    Optimistic in one way: the fine-tuned encoder saw these intents while training (the head
    rows are dropped, not the encoder's memory of them); honest in the other: only 10 examples.
    """
    rng = random.Random(seed)
    candidates = [label for label in classifier.labels if label != classifier.oos_label]
    chosen = sorted(rng.sample(candidates, min(int(opts["new_intents"]), len(candidates) - 1)))
    keep = [i for i, label in enumerate(classifier.labels) if label not in chosen]
    reduced = dataclasses.replace(
        classifier,
        labels=[classifier.labels[i] for i in keep],
        weight=classifier.weight[keep],
        bias=classifier.bias[keep],
        prototypes=classifier.prototypes[keep],
        lexical=classifier.lexical.subset(keep) if classifier.lexical is not None else None,
    )
    texts, ys = [], []
    k = int(opts["new_intent_examples"])
    for j, label in enumerate(chosen):
        pool = [t for t, y in zip(task.train_texts, task.train_y, strict=True) if task.labels[y] == label]
        for text in rng.sample(pool, min(k, len(pool))):
            texts.append(text)
            ys.append(j)
    started = time.monotonic()
    protos = class_prototypes(encoder.encode(texts, batch_size=64), ys, len(chosen))
    extended = reduced.with_extra(chosen, protos)
    seconds = time.monotonic() - started
    gold = np.asarray(test[1])
    pred_full = np.asarray(classifier.all_labels)[classifier.logits(test_emb, test[0]).argmax(axis=1)]
    pred_ext = np.asarray(extended.all_labels)[extended.logits(test_emb, test[0]).argmax(axis=1)]
    new_rows = np.isin(gold, chosen)
    old_rows = ~new_rows
    return {
        "intents": chosen,
        "examples_each": k,
        "seconds_to_add": round(seconds, 3),
        "new_intent_accuracy": round(float((pred_ext == gold)[new_rows].mean()), 4) if new_rows.any() else None,
        "new_intent_accuracy_with_full_head": round(float((pred_full == gold)[new_rows].mean()), 4)
        if new_rows.any()
        else None,
        "old_intent_accuracy_before": round(float((pred_full == gold)[old_rows].mean()), 4),
        "old_intent_accuracy_after": round(float((pred_ext == gold)[old_rows].mean()), 4),
    }
