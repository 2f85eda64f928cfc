"""The serving intent classifier: head + prototypes + lexical model + calibration as NumPy arrays,
and the prototype helpers (what chat answers before any training, and for intents added after it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backbone.encoder import Encoder
from chatbot.lexical import LexicalModel

if TYPE_CHECKING:
    from chatbot.ml import IntentHead

# Prototype-only classifiers (nothing trained yet): cosine x PROTOTYPE_SCALE as logits, and a
# message less similar than an intent's own examples are to each other (less the margin) matches none.
PROTOTYPE_SCALE = 20.0
PROTOTYPE_MARGIN = 0.1
DEFAULT_SIMILARITY_THRESHOLD = 0.4  # about what intents of 10 examples get on the packaged encoder


@dataclass(frozen=True)
class Prediction:
    """What chat answers for one message: the intent (None: out of scope), its calibrated
    confidence (rounded as the API shows it) and the top labels with theirs, best first."""

    intent: str | None
    confidence: float
    ranked: list[tuple[str, float]]


@dataclass
class IntentClassifier:
    """Head + prototypes + calibration, as NumPy arrays: what serving and evaluation need.

    ``extra_labels``/``extra_prototypes`` are intents added after training (prototype only).
    With a ``lexical`` model the logits need the texts as well as their embeddings.
    ``reject_similarity`` (prototype-only classifiers): a "none of them" option whose logit is that
    of a prototype match at this cosine; its probability is left out of :meth:`predict_proba`'s
    rows (they sum to less than one) and a message it wins is out of scope.
    """

    labels: list[str]
    weight: np.ndarray  # (C, dim), already multiplied by the logit scale
    bias: np.ndarray  # (C,)
    prototypes: np.ndarray  # (C, dim) unit vectors
    proto_a: float = 1.0
    proto_b: float = 0.0
    proto_weight: float = 0.0
    temperature: float = 1.0
    threshold: float = 0.0
    oos_label: str | None = None
    lexical: LexicalModel | None = None
    lexical_weight: float = 0.0
    extra_labels: list[str] = field(default_factory=list)
    extra_prototypes: np.ndarray | None = None
    reject_similarity: float | None = None

    @classmethod
    def from_head(cls, head: IntentHead, config: dict[str, Any]) -> IntentClassifier:
        """Build from a trained head and its config (``IntentTask.head_config``)."""
        state = {k: v.detach().float().cpu().numpy() for k, v in head.state_dict().items()}
        return cls.from_state(state, config)

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], config: dict[str, Any]) -> IntentClassifier:
        """Build from a head state dict (as NumPy arrays) and its config."""
        scale = float(np.exp(state["log_scale"]))
        cal = config.get("calibration", {})
        lexical = config.get("lexical")
        return cls(
            labels=list(config["labels"]),
            weight=state["linear.weight"] * scale,
            bias=state["linear.bias"] * scale,
            prototypes=state.get("prototypes", np.zeros_like(state["linear.weight"])),
            proto_a=float(cal.get("proto_a", 1.0)),
            proto_b=float(cal.get("proto_b", 0.0)),
            proto_weight=float(cal.get("proto_weight", 0.0)),
            temperature=float(cal.get("temperature", 1.0)),
            threshold=float(cal.get("threshold", 0.0)),
            oos_label=config.get("oos_label"),
            lexical=LexicalModel.from_saved(state, lexical["vocabularies"]) if lexical else None,
            lexical_weight=float(lexical["weight"]) if lexical else 0.0,
        )

    @classmethod
    def load(cls, folder: str | Path) -> IntentClassifier:
        """Load from a version's ``heads/intents`` folder (safetensors + config.json)."""
        from backbone.multitask import load_head_state

        state, config = load_head_state(Path(folder))
        return cls.from_state({k: v.float().numpy() for k, v in state.items()}, config)

    @classmethod
    def from_prototypes(
        cls, labels: list[str], prototypes: np.ndarray, thresholds: Sequence[float | None] = ()
    ) -> IntentClassifier:
        """A prototype-only classifier (no trained head yet): cosine x ``PROTOTYPE_SCALE`` as logits.

        A message matches none of the intents below the mean of their ``thresholds``
        (:func:`similarity_threshold`; ``DEFAULT_SIMILARITY_THRESHOLD`` when none is known).
        """
        known = [t for t in thresholds if t is not None]
        dim = prototypes.shape[1] if len(prototypes) else 0
        return cls(
            labels=list(labels),
            weight=np.zeros((len(labels), dim), dtype=np.float32),
            bias=np.zeros(len(labels), dtype=np.float32),
            prototypes=prototypes.astype(np.float32),
            proto_a=PROTOTYPE_SCALE,
            proto_b=0.0,
            proto_weight=1.0,
            reject_similarity=float(np.mean(known)) if known else DEFAULT_SIMILARITY_THRESHOLD,
        )

    def with_extra(self, labels: list[str], prototypes: np.ndarray) -> IntentClassifier:
        """Return a copy that also knows ``labels`` through their prototypes (no retraining)."""
        keep = [i for i, label in enumerate(labels) if label not in set(self.labels)]
        return IntentClassifier(
            **{k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("extra_labels", "extra_prototypes")},
            extra_labels=[labels[i] for i in keep],
            extra_prototypes=prototypes[keep].astype(np.float32) if keep else None,
        )

    @property
    def all_labels(self) -> list[str]:
        return self.labels + self.extra_labels

    def logits(self, embeddings: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """Uncalibrated logits over ``all_labels`` for (n, dim) unit embeddings of ``texts``."""
        logits = embeddings @ self.weight.T + self.bias
        if self.proto_weight:
            logits = logits + self.proto_weight * (self.proto_a * (embeddings @ self.prototypes.T) + self.proto_b)
        lexical = np.zeros((len(embeddings), 1), dtype=logits.dtype)
        if self.lexical is not None and self.lexical_weight:
            if texts is None or len(texts) != len(embeddings):
                raise ValueError("this classifier mixes in a lexical model: pass the texts with their embeddings")
            lexical = self.lexical_weight * self.lexical.log_proba(texts)
            logits = logits + lexical
        if self.extra_labels:
            # a new intent only has its prototype: put its cosine on the head's logit scale; the
            # lexical model never saw it, so it gets the lexical score of the best known intent
            extra = self.proto_a * (embeddings @ self.extra_prototypes.T) + self.proto_b
            extra = extra * (1.0 + self.proto_weight) + lexical.max(axis=1, keepdims=True)
            logits = np.concatenate([logits, extra], axis=1)
        return logits

    def predict_proba(self, embeddings: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """Calibrated probabilities over ``all_labels`` (``texts``: see :meth:`logits`)."""
        logits = self.logits(embeddings, texts) / self.temperature
        if self.reject_similarity is None:
            return softmax(logits)
        reject = self.proto_weight * (self.proto_a * self.reject_similarity + self.proto_b) / self.temperature
        return softmax(np.concatenate([logits, np.full((len(logits), 1), reject)], axis=1))[:, :-1]

    def is_out_of_scope(self, probs: np.ndarray) -> np.ndarray:
        """Boolean per row: the top label is the out-of-scope class, its probability is below the
        threshold, or "none of them" (``reject_similarity``) is more likely than it."""
        top = probs.argmax(axis=1)
        oos = probs.max(axis=1) < self.threshold
        if self.reject_similarity is not None:
            oos |= 1.0 - probs.sum(axis=1) >= probs.max(axis=1)
        if self.oos_label is not None and self.oos_label in self.labels:
            oos_index = self.labels.index(self.oos_label)
            oos |= top == oos_index
        return oos

    def predict(self, embeddings: np.ndarray, texts: Sequence[str] | None = None, top: int = 4) -> list[Prediction]:
        """What chat answers for each message (``texts``: see :meth:`logits`)."""
        probs = self.predict_proba(embeddings, texts)
        flagged = self.is_out_of_scope(probs)
        labels = self.all_labels
        predictions = []
        for row, out_of_scope in zip(probs, flagged, strict=True):
            ranked = [(labels[i], round(float(row[i]), 4)) for i in np.argsort(-row)[:top]]
            predictions.append(Prediction(None if out_of_scope else ranked[0][0], ranked[0][1], ranked))
        return predictions


def encode_messages(encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
    """Embed each message alone, as the chat endpoint does (in a padded batch a message's vector
    differs in its last float digits, enough to flip a tie)."""
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.concatenate([encoder.encode([text]) for text in texts])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def class_prototypes(embeddings: np.ndarray, y: Sequence[int], n_labels: int) -> np.ndarray:
    """Unit-length mean embedding per label (zeros for a label without examples)."""
    protos = np.zeros((n_labels, embeddings.shape[1]), dtype=np.float32)
    np.add.at(protos, np.asarray(y), embeddings)
    norms = np.linalg.norm(protos, axis=1, keepdims=True)
    return protos / np.maximum(norms, 1e-9)


def similarity_threshold(embeddings: np.ndarray) -> float | None:
    """Cosine under which a message is unlike these examples of one intent (unit embeddings):
    mean - 2 sd of each example's cosine to the mean of the others, less ``PROTOTYPE_MARGIN``.

    None with fewer than two examples (nothing to leave one out of).
    """
    if len(embeddings) < 2:
        return None
    others = embeddings.sum(axis=0) - embeddings
    others = others / np.maximum(np.linalg.norm(others, axis=1, keepdims=True), 1e-9)
    cosines = (embeddings * others).sum(axis=1)
    return round(float(cosines.mean() - 2 * cosines.std() - PROTOTYPE_MARGIN), 4)
