"""Intent classification on the shared backbone: the chatbot's multi-task training task and its
serving classifier.

Plain PyTorch/NumPy/scikit-learn, no ORM: the service layer hands it texts and labels.

The recipe: fine-tune the backbone with a cosine-style linear head (label smoothing, batches
bucketed by length so that padding stays small) and add a lexical model (word and character
n-gram TF-IDF + logistic regression, the sparse half of a sparse + dense classifier as in Rasa's
DIET) to its logits with a fixed weight. Then on the validation split fit (1) a prototype
classifier over the tuned embeddings mixed into the logits with a weight chosen on validation,
(2) a temperature for calibrated confidence and (3) an out-of-scope threshold on the calibrated
top probability. New intents join at serving time as prototypes (mean embedding of a few
examples) mapped onto the head's logit scale, without retraining. Before any training, intents
are served by their prototypes alone, with a "none of them" option at a similarity threshold
taken from the intents' own examples, so that one taught intent does not capture every message.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from backbone.encoder import Encoder

ECE_BINS = 15
PROTOTYPE_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
# Picked on a dev split carved from the train side: the validation split (5%) is too small to pick it.
LEXICAL_WEIGHT = 0.5
LEXICAL_NGRAMS = {"word": (1, 2), "char_wb": (2, 5)}
LEXICAL_C = 20.0
# Prototype-only classifiers (nothing trained yet): cosine x PROTOTYPE_SCALE as logits, and a
# message less similar than an intent's own examples are to each other (less the margin) matches none.
PROTOTYPE_SCALE = 20.0
PROTOTYPE_MARGIN = 0.1
DEFAULT_SIMILARITY_THRESHOLD = 0.4  # about what intents of 10 examples get on the packaged encoder
# The training recipe shared by training jobs and ``evaluate intents``, picked on the same dev split:
# frozen word embeddings and 5 epochs were within noise of the alternatives and keep a job on all
# of BANKING77 under 20 minutes on 2 CPU cores.
RECIPE = {
    "epochs": 5.0,
    "lr": 8e-5,
    "head_lr": 3e-3,
    "batch_size": 32,
    "label_smoothing": 0.1,
    "val_fraction": 0.05,
    "lexical_weight": LEXICAL_WEIGHT,
    "review_quantile": 0.02,
    "freeze_word_embeddings": True,
}
# The RECIPE keys that configure the intent task; the others configure the shared trainer.
TASK_PARAMETERS = ("val_fraction", "label_smoothing", "lexical_weight", "review_quantile")


def _vectorizer(analyzer: str, vocabulary: list[str] | None = None) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer=analyzer,
        ngram_range=LEXICAL_NGRAMS[analyzer],
        sublinear_tf=True,
        vocabulary=vocabulary,
        dtype=np.float32,  # as the coefficients: a float64 row would copy them at every call
    )


@dataclass
class LexicalModel:
    """Word 1-2-gram and character 2-5-gram TF-IDF + multinomial logistic regression.

    The exact wording (``PIN``, ``SEPA``, ``top-up``) that a sentence embedding blurs. Kept as
    plain arrays (vocabularies, idf, coefficients) so that it is saved with the head's
    safetensors and config, without pickles.
    """

    vocabularies: dict[str, list[str]]
    idf: dict[str, np.ndarray]
    coef: np.ndarray  # (n_labels, total vocabulary)
    intercept: np.ndarray  # (n_labels,)

    @classmethod
    def fit(cls, texts: Sequence[str], y: Sequence[int], n_labels: int) -> LexicalModel | None:
        """Fit on ``texts`` labelled ``y`` in ``range(n_labels)``; None with fewer than two labels."""
        if len(set(y)) < 2:
            return None
        vectorizers = {name: _vectorizer(name).fit(texts) for name in LEXICAL_NGRAMS}
        x = hstack([v.transform(texts) for v in vectorizers.values()]).tocsr()
        clf = LogisticRegression(max_iter=3000, C=LEXICAL_C).fit(x, y)
        coef, intercept = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2:  # binary: sigmoid(w.x + b) = softmax([0, w.x + b])
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
        # a label without training examples (only in validation) can never win
        full_coef = np.zeros((n_labels, x.shape[1]), dtype=np.float32)
        full_intercept = np.full(n_labels, float(intercept.min()) - 30.0, dtype=np.float32)
        full_coef[clf.classes_], full_intercept[clf.classes_] = coef, intercept
        return cls(
            vocabularies={name: v.get_feature_names_out().tolist() for name, v in vectorizers.items()},
            idf={name: v.idf_.astype(np.float32) for name, v in vectorizers.items()},
            coef=full_coef,
            intercept=full_intercept,
        )

    def __post_init__(self):
        # per vectorizer, its block of the coefficients, transposed and contiguous (fast sparse x dense)
        self._blocks = []
        start = 0
        for name, vocabulary in self.vocabularies.items():
            vectorizer = _vectorizer(name, vocabulary)
            vectorizer.idf_ = self.idf[name]
            block = np.ascontiguousarray(self.coef[:, start : start + len(vocabulary)].T, dtype=np.float32)
            self._blocks.append((vectorizer, block))
            start += len(vocabulary)

    def log_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, n_labels) log-probabilities."""
        z = self.intercept + sum(np.asarray(v.transform(texts) @ block) for v, block in self._blocks)
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def subset(self, rows: Sequence[int]) -> LexicalModel:
        """The model restricted to the labels ``rows`` (probabilities renormalised over them)."""
        return LexicalModel(self.vocabularies, self.idf, self.coef[rows], self.intercept[rows])

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save (see :meth:`from_saved`)."""
        return {
            "lexical_coef": self.coef,
            "lexical_intercept": self.intercept,
            **{f"lexical_idf_{name}": idf for name, idf in self.idf.items()},
        }

    @classmethod
    def from_saved(cls, arrays: dict[str, np.ndarray], vocabularies: dict[str, list[str]]) -> LexicalModel:
        """Rebuild from :meth:`arrays` and :attr:`vocabularies`."""
        return cls(
            vocabularies=vocabularies,
            idf={name: arrays[f"lexical_idf_{name}"] for name in vocabularies},
            coef=arrays["lexical_coef"],
            intercept=arrays["lexical_intercept"],
        )


class IntentHead(nn.Module):
    """Linear classifier over unit-length embeddings with a learned logit scale.

    Buffers (saved with the weights): the lexical model's arrays when there is one (fitted
    before training, not trained by it), and, filled after training, the class prototypes
    (mean tuned embedding per label).
    """

    def __init__(self, dim: int, n_labels: int, dropout: float = 0.1, lexical: LexicalModel | None = None):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(dim, n_labels)
        self.log_scale = nn.Parameter(torch.tensor(math.log(20.0)))
        self.register_buffer("prototypes", torch.zeros(n_labels, dim))
        for name, array in (lexical.arrays() if lexical is not None else {}).items():
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))

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


# --- the serving classifier -----------------------------------------------------------------


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
    """Embed each message alone, as the chat endpoint does: an int8 encoder quantises its
    activations with one scale per batch, so a message's embedding depends on its batch."""
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


def fit_temperature(logits: np.ndarray, y: Sequence[int]) -> float:
    """Temperature that minimises the negative log-likelihood on held-out logits.

    1.0 when the top logit of every held-out example is its label (a small split the head gets
    all right): the likelihood then only rises as the temperature shrinks, and the smallest one
    tried would answer every message, unrelated ones too, at confidence 1.0.
    """
    y = np.asarray(y)
    if (logits.argmax(axis=1) == y).all():
        return 1.0

    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())

    return round(math.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x), 4)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with equal-width confidence bins: sum over bins of |accuracy - confidence| x share."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            ece += abs(correct[mask].mean() - confidence[mask].mean()) * mask.mean()
    return round(float(ece), 4)


def fit_prototype_map(embeddings: np.ndarray, head_logits: np.ndarray, prototypes: np.ndarray) -> tuple[float, float]:
    """Least-squares a, b with head logit ~= a x cosine-to-prototype + b over all (example, label) pairs."""
    cos = (embeddings @ prototypes.T).ravel()
    a, b = np.polyfit(cos, head_logits.ravel(), 1)
    return float(a), float(b)


def choose_threshold(
    probs: np.ndarray, y: np.ndarray, oos_index: int | None, *, max_in_scope_drop: float, quantile: float
) -> float:
    """Out-of-scope threshold on the top probability, chosen on validation.

    With out-of-scope examples: the threshold with the best out-of-scope recall whose in-scope
    accuracy is at most ``max_in_scope_drop`` below the accuracy without a threshold. Without
    them: the ``quantile`` of the top probability of in-scope messages (that share is answered out
    of scope: the recipe's ``review_quantile``).
    """
    top, pred = probs.max(axis=1), probs.argmax(axis=1)
    if oos_index is None:
        # floored, not rounded: a threshold rounded up to 1.0 would send every saturated message out of scope
        return math.floor(float(np.quantile(top, quantile)) * 1e4) / 1e4
    in_scope = y != oos_index
    best, best_recall = 0.0, -1.0
    base = None
    for t in np.linspace(0.0, 0.99, 100):
        flagged = (top < t) | (pred == oos_index)
        acc = float(((pred == y) & ~flagged)[in_scope].mean())
        recall = float(flagged[~in_scope].mean()) if (~in_scope).any() else 0.0
        if base is None:
            base = acc
        if acc >= base - max_in_scope_drop and recall > best_recall:
            best, best_recall = float(t), recall
    return round(best, 4)


# --- the training task ----------------------------------------------------------------------


class IntentTask:
    """Fine-tunes the backbone with a classification head over intent labels.

    ``train`` and ``val`` are (texts, labels); when ``val`` is None, ``val_fraction`` of
    ``train`` per label is carved out (seeded) as the validation split. With ``lexical_weight``
    the head carries a :class:`LexicalModel` fitted on the training split before fine-tuning.
    ``oos_label`` names the out-of-scope class when the data has one (trained as a class and
    thresholded).
    After training, :meth:`evaluate` calibrates on the validation split (prototypes, their
    weight, temperature, out-of-scope threshold); :meth:`head_config` then carries them.
    """

    name = "intents"

    def __init__(
        self,
        train: tuple[list[str], list[str]],
        val: tuple[list[str], list[str]] | None = None,
        *,
        weight: float = 1.0,
        val_fraction: float = RECIPE["val_fraction"],
        seed: int = 13,
        eval_batch_size: int = 128,
        label_smoothing: float = RECIPE["label_smoothing"],
        lexical_weight: float = RECIPE["lexical_weight"],
        oos_label: str | None = None,
        max_in_scope_drop: float = 0.01,
        review_quantile: float = RECIPE["review_quantile"],
    ):
        texts, labels = train
        if val is None:
            tr, va = stratified_split(labels, val_fraction, seed)
            val = ([texts[i] for i in va], [labels[i] for i in va])
            texts, labels = [texts[i] for i in tr], [labels[i] for i in tr]
        if not texts or not val[0]:
            raise ValueError("intent task needs training and validation examples")
        self.labels = sorted(set(labels) | set(val[1]))
        if len(self.labels) < 2:
            # a softmax over one label answers it at confidence 1.0 whatever the message
            raise ValueError(f"an intent head needs at least two intents; got {self.labels}")
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.train_texts, self.train_y = texts, [self.index[x] for x in labels]
        self.val_texts, self.val_y = val[0], [self.index[x] for x in val[1]]
        self.weight = weight
        self.eval_batch_size = eval_batch_size
        self.label_smoothing = label_smoothing
        self.oos_label = oos_label if oos_label in self.index else None
        self.max_in_scope_drop = max_in_scope_drop
        self.review_quantile = review_quantile
        self.lexical_weight = lexical_weight
        self.lexical: LexicalModel | None = None
        self.calibration: dict[str, float] = {}

    def build_head(self, dim: int) -> nn.Module:
        if self.lexical_weight:
            self.lexical = LexicalModel.fit(self.train_texts, self.train_y, len(self.labels))
        return IntentHead(dim, len(self.labels), lexical=self.lexical)

    def batches(self, rng: random.Random, batch_size: int) -> list[Any]:
        """Shuffled batches of similar-length texts (little padding), in shuffled order."""
        order = list(range(len(self.train_texts)))
        rng.shuffle(order)
        chunk = batch_size * 50
        batches = []
        for start in range(0, len(order), chunk):
            block = sorted(order[start : start + chunk], key=lambda i: len(self.train_texts[i]))
            batches.extend(block[i : i + batch_size] for i in range(0, len(block), batch_size))
        rng.shuffle(batches)
        return batches

    def loss(self, encoder: Encoder, head: nn.Module, batch: list[int]) -> torch.Tensor:
        features = encoder.tokenize([self.train_texts[i] for i in batch])
        logits = head(encoder(features))
        target = torch.tensor([self.train_y[i] for i in batch], device=logits.device)
        return nn.functional.cross_entropy(logits, target, label_smoothing=self.label_smoothing)

    def calibrate(self, encoder: Encoder, head: IntentHead) -> tuple[IntentClassifier, np.ndarray]:
        """Fit prototypes, their weight, temperature and threshold on validation; return (classifier, val embeddings)."""
        head.eval()
        train_emb = encoder.encode(self.train_texts, batch_size=self.eval_batch_size)
        val_emb = encoder.encode(self.val_texts, batch_size=self.eval_batch_size)
        protos = class_prototypes(train_emb, self.train_y, len(self.labels))
        with torch.no_grad():
            head.prototypes.copy_(torch.from_numpy(protos))
        classifier = IntentClassifier.from_head(head, self.head_config())
        y, texts = np.asarray(self.val_y), self.val_texts
        head_logits = val_emb @ classifier.weight.T + classifier.bias
        classifier.proto_a, classifier.proto_b = fit_prototype_map(val_emb, head_logits, protos)
        best = (-1.0, 0.0)
        for w in PROTOTYPE_WEIGHTS:
            classifier.proto_weight = w
            acc = float((classifier.logits(val_emb, texts).argmax(axis=1) == y).mean())
            best = max(best, (acc, -w))  # ties: the smaller weight
        classifier.proto_weight = -best[1]
        classifier.temperature = fit_temperature(classifier.logits(val_emb, texts), y)
        oos_index = self.index[self.oos_label] if self.oos_label else None
        classifier.threshold = choose_threshold(
            classifier.predict_proba(val_emb, texts),
            y,
            oos_index,
            max_in_scope_drop=self.max_in_scope_drop,
            quantile=self.review_quantile,
        )
        self.calibration = {
            "proto_a": round(classifier.proto_a, 4),
            "proto_b": round(classifier.proto_b, 4),
            "proto_weight": classifier.proto_weight,
            "temperature": classifier.temperature,
            "threshold": classifier.threshold,
        }
        return classifier, val_emb

    def evaluate(self, encoder: Encoder, head: nn.Module) -> dict[str, float]:
        """Calibrate on the validation split, then report its metrics (accuracy, macro-F1, ECE)."""
        classifier, val_emb = self.calibrate(encoder, head)
        metrics = intent_metrics(classifier, val_emb, [self.labels[i] for i in self.val_y], self.val_texts)
        return {**metrics, "n_val": len(self.val_y), "n_train": len(self.train_texts), **self.calibration}

    def baselines(self, encoder: Encoder) -> dict[str, dict[str, float]]:
        """Frozen encoder + logistic regression on the same train/validation split."""
        x_train = encoder.encode(self.train_texts, batch_size=self.eval_batch_size)
        x_val = encoder.encode(self.val_texts, batch_size=self.eval_batch_size)
        clf = LogisticRegression(max_iter=2000, C=10.0)
        clf.fit(x_train, self.train_y)
        pred = clf.predict(x_val)
        return {"frozen_encoder_logreg": classification_metrics(self.val_y, pred, n_train=len(self.train_texts))}

    def head_config(self) -> dict[str, Any]:
        return {
            "type": "intent_classifier",
            "labels": self.labels,
            "oos_label": self.oos_label,
            "calibration": self.calibration,
            "lexical": {"weight": self.lexical_weight, "vocabularies": self.lexical.vocabularies}
            if self.lexical is not None
            else None,
        }


def intent_metrics(
    classifier: IntentClassifier, embeddings: np.ndarray, gold: Sequence[str], texts: Sequence[str]
) -> dict[str, float]:
    """:func:`prediction_metrics` of ``classifier`` on ``texts`` (and their embeddings)."""
    return prediction_metrics(classifier.predict(embeddings, texts), gold, classifier.oos_label)


def prediction_metrics(predictions: Sequence[Prediction], gold: Sequence[str], oos: str | None) -> dict[str, float]:
    """Metrics of what chat answers: accuracy, macro-F1 and 15-bin ECE of the answered intent
    (out of scope counts as the ``oos`` label, or as wrong when the data has none), the share
    answered out of scope and the accuracy of the top label alone; with an out-of-scope class also
    in-scope accuracy and out-of-scope recall/precision."""
    final = [p.intent if p.intent is not None else (oos or "") for p in predictions]
    gold = list(gold)
    metrics = label_metrics(gold, final, np.array([p.confidence for p in predictions]))
    metrics["out_of_scope_share"] = round(float(np.mean([p.intent is None for p in predictions])), 4)
    metrics["top_label_accuracy"] = round(float(np.mean([p.ranked[0][0] == g for p, g in zip(predictions, gold)])), 4)
    if oos is not None:
        metrics.update(out_of_scope_metrics(gold, final, oos))
    return metrics


def label_metrics(gold: Sequence[str], pred: Sequence[str], confidence: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 (over the gold labels) and ECE for string labels."""
    correct = np.array([g == p for g, p in zip(gold, pred, strict=True)])
    return {
        "accuracy": round(float(correct.mean()), 4),
        "macro_f1": round(float(f1_score(gold, pred, labels=sorted(set(gold)), average="macro")), 4),
        "ece": expected_calibration_error(confidence, correct),
        "n": len(gold),
    }


def out_of_scope_metrics(gold: Sequence[str], final: Sequence[str], oos: str) -> dict[str, float]:
    """In-scope accuracy (an in-scope message flagged out-of-scope is wrong) and out-of-scope recall/precision."""
    g, f = np.asarray(gold), np.asarray(final)
    in_scope, flagged = g != oos, f == oos
    return {
        "in_scope_accuracy": round(float((f == g)[in_scope].mean()), 4) if in_scope.any() else 0.0,
        "oos_recall": round(float(flagged[~in_scope].mean()), 4) if (~in_scope).any() else 0.0,
        "oos_precision": round(float((~in_scope)[flagged].mean()), 4) if flagged.any() else 0.0,
    }


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], n_train: int) -> dict[str, float]:
    """Accuracy and macro-F1 on the validation split, with its size."""
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "macro_f1": round(float(f1_score(y_true, y_pred, average="macro")), 4),
        "n_val": len(y_true),
        "n_train": n_train,
    }
