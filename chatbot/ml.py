"""Intent classification on the shared backbone: the chatbot's multi-task training task.

Plain PyTorch/scikit-learn, no ORM: the service layer hands it texts and labels.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from backbone.encoder import Encoder


class IntentHead(nn.Module):
    """Linear classifier over unit-length embeddings with a learned logit scale."""

    def __init__(self, dim: int, n_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(dim, n_labels)
        self.log_scale = nn.Parameter(torch.tensor(math.log(20.0)))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(embeddings)) * self.log_scale.exp()


def stratified_split(labels: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into (train, held-out) with about ``fraction`` of each label held out."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    train, held = [], []
    for label in sorted(by_label):
        idx = by_label[label]
        rng.shuffle(idx)
        k = max(1, round(len(idx) * fraction)) if len(idx) > 1 else 0
        held.extend(idx[:k])
        train.extend(idx[k:])
    return sorted(train), sorted(held)


def stratified_sample(labels: Sequence[str], limit: int, seed: int) -> list[int]:
    """Pick about ``limit`` indices keeping every label's share."""
    if limit >= len(labels):
        return list(range(len(labels)))
    _, picked = stratified_split(labels, limit / len(labels), seed)
    return picked


class IntentTask:
    """Fine-tunes the backbone with a classification head over intent labels.

    ``train`` and ``val`` are (texts, labels); when ``val`` is None, 10% of ``train`` per
    label is carved out (seeded) as the validation split.
    """

    name = "intents"

    def __init__(
        self,
        train: tuple[list[str], list[str]],
        val: tuple[list[str], list[str]] | None = None,
        *,
        weight: float = 1.0,
        val_fraction: float = 0.1,
        seed: int = 13,
        eval_batch_size: int = 128,
    ):
        texts, labels = train
        if val is None:
            tr, va = stratified_split(labels, val_fraction, seed)
            val = ([texts[i] for i in va], [labels[i] for i in va])
            texts, labels = [texts[i] for i in tr], [labels[i] for i in tr]
        if not texts or not val[0]:
            raise ValueError("intent task needs training and validation examples")
        self.labels = sorted(set(labels) | set(val[1]))
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.train_texts, self.train_y = texts, [self.index[x] for x in labels]
        self.val_texts, self.val_y = val[0], [self.index[x] for x in val[1]]
        self.weight = weight
        self.eval_batch_size = eval_batch_size

    def build_head(self, dim: int) -> nn.Module:
        return IntentHead(dim, len(self.labels))

    def batches(self, rng: random.Random, batch_size: int) -> list[Any]:
        order = list(range(len(self.train_texts)))
        rng.shuffle(order)
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def loss(self, encoder: Encoder, head: nn.Module, batch: list[int]) -> torch.Tensor:
        features = encoder.tokenize([self.train_texts[i] for i in batch])
        logits = head(encoder(features))
        target = torch.tensor([self.train_y[i] for i in batch], device=logits.device)
        return nn.functional.cross_entropy(logits, target)

    @torch.inference_mode()
    def predict_logits(self, encoder: Encoder, head: nn.Module, texts: Sequence[str]) -> np.ndarray:
        vectors = encoder.encode(list(texts), batch_size=self.eval_batch_size)
        emb = torch.from_numpy(vectors).to(encoder.device)
        return head(emb).float().cpu().numpy()

    def evaluate(self, encoder: Encoder, head: nn.Module) -> dict[str, float]:
        logits = self.predict_logits(encoder, head, self.val_texts)
        pred = logits.argmax(axis=1)
        return classification_metrics(self.val_y, pred, n_train=len(self.train_texts))

    def baselines(self, encoder: Encoder) -> dict[str, dict[str, float]]:
        """Frozen encoder + logistic regression on the same train/validation split."""
        x_train = encoder.encode(self.train_texts, batch_size=self.eval_batch_size)
        x_val = encoder.encode(self.val_texts, batch_size=self.eval_batch_size)
        clf = LogisticRegression(max_iter=2000, C=10.0)
        clf.fit(x_train, self.train_y)
        pred = clf.predict(x_val)
        return {"frozen_encoder_logreg": classification_metrics(self.val_y, pred, n_train=len(self.train_texts))}

    def head_config(self) -> dict[str, Any]:
        return {"type": "intent_classifier", "labels": self.labels}


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], n_train: int) -> dict[str, float]:
    """Accuracy and macro-F1 on the validation split, with its size."""
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "macro_f1": round(float(f1_score(y_true, y_pred, average="macro")), 4),
        "n_val": len(y_true),
        "n_train": n_train,
    }
