"""Click-through-rate prediction: the one pCTR recipe that the platform serves and ``evaluate ads`` measures.

Plain PyTorch/NumPy/SciPy, no ORM. A row is a dict ``field -> str`` (single-valued fields) or
``field -> list[str]`` (bag fields such as genres or query words), plus, per text slot, an index
into a matrix of backbone text embeddings (slot 0: the ad creative; then context texts such as
the query). :func:`fit_ctr_model` is the recipe; :class:`CtrModel` (``fit / predict /
predict_candidates / save / load``) is what it returns and what serving loads: a small ensemble
of DeepFM networks that also read the customer's taste profiles (:class:`TasteProfiles`), with
Platt scaling fitted on a validation split that the networks never trained on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from scipy import sparse, stats
from sklearn.metrics import log_loss, roc_auc_score
from torch import nn

from ads.network import DeepFM, PackedDeepFM

UNKNOWN = 0  # index of unseen / rare values in every field vocabulary
PROFILE_FIELD = "customer"  # the field whose taste profiles the recipe adds, when the rows have it


# --- encoding -------------------------------------------------------------------------------


@dataclass
class FieldSpec:
    """One input field: ``cat`` (one value per row), ``bag`` (a list of values per row), or ``cross``: the
    pairs ``x|y`` of the values of the two fields ``of`` (e.g. customer x genre), a bag of their own."""

    name: str
    kind: str = "cat"
    max_len: int = 8
    of: tuple[str, str] | list[str] | None = None

    @property
    def is_bag(self) -> bool:
        return self.kind in ("bag", "cross")


def as_list(value: Any) -> list[str]:
    """A field's value as a list: a bag as it is, one value as [value], nothing as []."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [] if value is None or value == "" else [value]


def field_values(row: dict[str, Any], spec: FieldSpec) -> list[str]:
    """The values of ``spec`` in one row (a cross's are built from its two fields)."""
    if spec.kind == "cross":
        a, b = spec.of
        return [f"{x}|{y}" for x in as_list(row.get(a)) for y in as_list(row.get(b))]
    return as_list(row.get(spec.name)) if spec.is_bag else [row.get(spec.name)]


class Vocabulary:
    """Value -> index per field; values seen fewer than ``min_count`` times map to UNKNOWN."""

    def __init__(self, fields: Sequence[FieldSpec], index: dict[str, dict[str, int]] | None = None):
        self.fields = list(fields)
        self.index = index or {f.name: {} for f in self.fields}

    @classmethod
    def build(cls, fields: Sequence[FieldSpec], rows: Sequence[dict[str, Any]], min_count: int = 1) -> Vocabulary:
        """Count values in ``rows`` and give each frequent one an index starting at 1."""
        index = {}
        for spec in fields:
            counts = Counter(v for row in rows for v in field_values(row, spec) if v is not None)
            frequent = sorted(v for v, c in counts.items() if c >= min_count)
            index[spec.name] = {v: i + 1 for i, v in enumerate(frequent)}
        return cls(fields, index)

    def sizes(self) -> dict[str, int]:
        """Rows of each field's embedding table (its values plus UNKNOWN)."""
        return {name: len(values) + 1 for name, values in self.index.items()}

    def encode_field(self, spec: FieldSpec, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """One field as an int64 array: (n,) for a ``cat`` field, (n, max_len) for bags and crosses."""
        lookup = self.index[spec.name]
        if not spec.is_bag:
            return np.fromiter((lookup.get(row.get(spec.name), UNKNOWN) for row in rows), np.int64, len(rows))
        arr = np.zeros((len(rows), spec.max_len), dtype=np.int64)
        for i, row in enumerate(rows):
            ids = [x for x in (lookup.get(v, UNKNOWN) for v in field_values(row, spec)) if x != UNKNOWN]
            arr[i, : min(len(ids), spec.max_len)] = ids[: spec.max_len]
        return arr

    def encode(self, rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Return per field an int64 array: (n,) for ``cat`` fields, (n, max_len) for bags and crosses."""
        return {spec.name: self.encode_field(spec, rows) for spec in self.fields}

    def encode_candidates(self, shared: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Like :meth:`encode` for rows that all carry the ``shared`` values: a field that only reads
        shared values is looked up once and returned as one row, (1,) or (1, max_len), for all."""
        out: dict[str, np.ndarray] = {}
        for spec in self.fields:
            reads = spec.of if spec.kind == "cross" else (spec.name,)
            if all(name in shared for name in reads):
                out[spec.name] = self.encode_field(spec, [shared])
            elif spec.kind == "cross":
                out[spec.name] = self.encode_cross(spec, shared, rows)
            else:
                out[spec.name] = self.encode_field(spec, rows)
        return out

    def encode_cross(self, spec: FieldSpec, shared: dict[str, Any], rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """A cross of a shared field and a candidate field, encoded once per distinct candidate value."""
        side = [name for name in spec.of if name not in shared]
        bags = {f.name for f in self.fields if f.is_bag}
        if len(side) != 1 or side[0] in bags:
            return self.encode_field(spec, [{**shared, **row} for row in rows])
        name, first = side[0], {}
        inverse = np.fromiter((first.setdefault(row.get(name), len(first)) for row in rows), np.int64, len(rows))
        return self.encode_field(spec, [{**shared, name: value} for value in first])[inverse]


# --- calibration and metrics ----------------------------------------------------------------


@dataclass
class Platt:
    """p = sigmoid(a * logit + b), fitted by maximum likelihood on a validation split."""

    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray, steps: int = 200) -> Platt:
        """Fit ``a`` and ``b`` with L-BFGS on the log loss."""
        x = torch.tensor(logits, dtype=torch.float64)
        y = torch.tensor(labels, dtype=torch.float64)
        params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([params], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(params[0] * x + params[1], y)
            loss.backward()
            return loss

        optimizer.step(closure)
        a, b = params.detach().tolist()
        return cls(a=float(a), b=float(b))

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * np.asarray(logits, dtype=np.float64) + self.b)))


def ctr_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """AUC, log loss and calibration ratio (mean predicted CTR / observed CTR)."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    both = 0 < labels.sum() < len(labels)
    return {
        "auc": round(float(roc_auc_score(labels, probs)), 4) if both else float("nan"),
        "log_loss": round(float(log_loss(labels, probs, labels=[0, 1])), 4),
        "calibration_ratio": round(float(probs.mean() / max(labels.mean(), 1e-12)), 4),
        "mean_pctr": round(float(probs.mean()), 5),
        "observed_ctr": round(float(labels.mean()), 5),
    }


def bootstrap_auc(labels: np.ndarray, probs: np.ndarray, *, rounds: int = 1000, seed: int = 7) -> dict[str, float]:
    """Percentile bootstrap 95% interval of the AUC (``scipy.stats.bootstrap``, resampling rows in pairs)."""

    def auc(y: np.ndarray, p: np.ndarray) -> float:
        return roc_auc_score(y, p) if 0 < y.sum() < len(y) else np.nan  # a resample with one class has no AUC

    result = stats.bootstrap(
        (np.asarray(labels), np.asarray(probs)),
        auc,
        paired=True,
        vectorized=False,
        n_resamples=rounds,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return {
        "auc_ci95_low": round(float(result.confidence_interval.low), 4),
        "auc_ci95_high": round(float(result.confidence_interval.high), 4),
        "bootstrap_rounds": int(np.isfinite(result.bootstrap_distribution).sum()),
    }


# --- data and taste profiles ----------------------------------------------------------------


@dataclass
class CtrData:
    """Impressions: field specs, rows, click labels, and per text slot the row -> text index and the text
    embedding matrix (slot 0: the ad creative; then context texts). Train and validation data are
    subsets of one CtrData, so they share the text matrices."""

    fields: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    labels: np.ndarray | None = None
    text_ids: list[np.ndarray] = field(default_factory=list)
    text_vectors: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, idx: np.ndarray) -> CtrData:
        """The rows at ``idx`` (same fields and text matrices)."""
        return CtrData(
            fields=self.fields,
            rows=[self.rows[i] for i in idx],
            labels=None if self.labels is None else self.labels[idx],
            text_ids=[t[idx] for t in self.text_ids],
            text_vectors=self.text_vectors,
        )

    def without_text(self) -> CtrData:
        """The same rows with no text slots (the ablation that shows what the backbone adds)."""
        return CtrData(fields=self.fields, rows=self.rows, labels=self.labels)

    def keys(self, name: str) -> np.ndarray:
        """The values of field ``name`` as an object array ("" where missing)."""
        return np.asarray([row.get(name) or "" for row in self.rows], dtype=object)


def normalised(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-9)).astype(np.float32)


def taste_means(groups: np.ndarray, n_groups: int, ids: np.ndarray, matrix: np.ndarray, mask: np.ndarray):
    """Per group: the sum of ``matrix[ids]`` over the rows in ``mask`` ((n_groups, dim), one sparse product)."""
    counts = sparse.csr_matrix(
        (np.ones(int(mask.sum()), dtype=np.float32), (groups[mask], ids[mask])), shape=(n_groups, len(matrix))
    )
    return np.asarray(counts @ matrix, dtype=np.float32)


class TasteProfiles:
    """Each customer's taste: the unit-length mean creative embedding of what they clicked, and of what they
    did not. ``liked`` and ``disliked`` have one row per key plus a last zero row for unknown customers."""

    def __init__(self, keys: list[str], liked: np.ndarray, disliked: np.ndarray):
        self.keys = list(keys)
        self.position = {k: i for i, k in enumerate(self.keys)}
        self.liked, self.disliked = liked, disliked

    @classmethod
    def build(cls, keys: np.ndarray, ids: np.ndarray, matrix: np.ndarray, labels: np.ndarray) -> TasteProfiles:
        """From each row's customer key ("" = anonymous, left out), creative index into ``matrix`` and click."""
        known = sorted({k for k in keys if k})
        position = {k: i for i, k in enumerate(known)}
        groups = np.fromiter((position.get(k, len(known)) for k in keys), dtype=np.int64, count=len(keys))
        clicked = np.asarray(labels) > 0.5
        liked = taste_means(groups, len(known) + 1, ids, matrix, clicked)
        disliked = taste_means(groups, len(known) + 1, ids, matrix, ~clicked)
        liked[-1] = disliked[-1] = 0.0  # the anonymous rows' sums: unknown customers read zeros
        return cls(known, normalised(liked), normalised(disliked))

    def index(self, keys: Sequence[str]) -> np.ndarray:
        """Row of each key in ``liked`` / ``disliked`` (the zero row for an unknown one)."""
        return np.fromiter((self.position.get(k, len(self.keys)) for k in keys), dtype=np.int64, count=len(keys))


def out_of_fold_tastes(data: CtrData, field_name: str, folds: int, seed: int) -> tuple[np.ndarray, ...]:
    """Taste profiles of training rows, each from the customer's rows in the other ``folds`` - 1 folds.

    Returns (liked matrix, disliked matrix, row -> matrix row). A row's profile never depends on its own
    label, not even through which rows share it (as it would with leave-one-out, which a network that
    also sees the customer id can memorise). One matrix row per (customer, fold) present.
    """
    keys, ids, matrix = data.keys(field_name), data.text_ids[0], data.text_vectors[0]
    fold = np.random.default_rng(seed).integers(0, folds, len(keys))
    known = sorted({k for k in keys if k})
    position = {k: i for i, k in enumerate(known)}
    customer = np.fromiter((position.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    pairs, pair = np.unique(np.where(customer >= 0, customer * folds + fold, -1), return_inverse=True)
    clicked = np.asarray(data.labels) > 0.5
    out = []
    for mask in (clicked, ~clicked):
        whole = taste_means(np.maximum(customer, 0), len(known) + 1, ids, matrix, mask & (customer >= 0))
        own = taste_means(pair, len(pairs), ids, matrix, mask)
        others = whole[np.maximum(pairs, 0) // folds] - own  # the customer's rows outside the pair's fold
        others[pairs < 0] = 0.0  # anonymous rows
        out.append(normalised(others))
    return out[0], out[1], pair.astype(np.int64)


# --- the model ------------------------------------------------------------------------------


@dataclass
class CtrConfig:
    """Hyper-parameters of :class:`CtrModel`; the defaults are the recipe (picked on the MovieLens dev split)."""

    fields: list[dict[str, Any]] = field(default_factory=list)
    text_slots: int = 0  # text inputs per row: the ad creative first, then context texts
    text_dim: int = 384
    profile_field: str = ""  # field naming the customer whose taste profiles the networks read ("" = none)
    profile_folds: int = 5
    taste_cosine: bool = True  # the creative's cosine to each taste as two dense features
    dim: int = 24
    hidden: list[int] = field(default_factory=lambda: [64])
    dropout: float = 0.2
    lr: float = 1e-3
    first_order_lr: float | None = 2e-3
    weight_decay: float = 1e-6
    embedding_l2: float = 1e-3  # with cross fields a stronger L2 than without them did better on dev
    batch_size: int = 4096
    max_epochs: int = 40
    patience: int = 3
    min_count: int = 1
    seed: int = 7
    seeds: int = 3  # networks trained with seeds seed, seed+1, ...; their logits are averaged

    @property
    def taste_slots(self) -> int:
        return 2 if self.profile_field else 0

    @property
    def dense_dim(self) -> int:
        return 2 if self.profile_field and self.taste_cosine else 0


RECIPE_KEYS = tuple(f.name for f in dataclasses.fields(CtrConfig) if f.name not in ("fields", "text_slots", "text_dim"))


def fit_ctr_model(
    train: CtrData,
    val: CtrData,
    parameters: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CtrModel:
    """The one pCTR recipe: what the platform trains and serves, and what ``evaluate ads`` measures.

    An ensemble of ``seeds`` DeepFM networks over the data's fields and text slots; when the rows
    name a ``customer`` and carry creative embeddings, also the customer's taste profiles and the
    creative's cosine to each; one Platt calibration on ``val``. ``parameters`` override the
    :class:`CtrConfig` defaults by name (others are ignored: a training job's parameters are shared by apps).
    """
    names = {f["name"] for f in train.fields}
    config = CtrConfig(
        fields=train.fields,
        text_slots=len(train.text_vectors),
        profile_field=PROFILE_FIELD if PROFILE_FIELD in names and train.text_vectors else "",
    )
    for key, value in (parameters or {}).items():
        if key in RECIPE_KEYS:
            setattr(config, key, value)
    return CtrModel(config).fit(train, val, progress=progress)


@dataclass
class Inputs:
    """What the networks read for ``n`` rows: field value indices, text slots and dense features.

    A text slot is (matrix, ids): row i reads ``matrix[ids[i]]``; with ids None the matrix is
    row-aligned, or a single row that every row shares (a request's context, a customer's taste).
    A field tensor, too, is row-aligned or a single row for all (a request's shared fields).
    """

    n: int
    fields: dict[str, torch.Tensor]
    texts: list[tuple[torch.Tensor, torch.Tensor | None]]
    dense: torch.Tensor | None = None

    def batch(self, idx) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], torch.Tensor | None]:
        """The network arguments of the rows ``idx`` (a slice or an index tensor)."""
        texts = [matrix[ids[idx]] if ids is not None else rows(matrix, idx) for matrix, ids in self.texts]
        dense = None if self.dense is None else self.dense[idx]
        return {k: rows(v, idx) for k, v in self.fields.items()}, texts, dense


def rows(x: torch.Tensor, idx) -> torch.Tensor:
    """The rows ``idx`` of a row-aligned tensor; a single row shared by every row as it is."""
    return x if x.shape[0] == 1 else x[idx]


def tensor(x: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)


def slot_cosine(a: tuple[torch.Tensor, torch.Tensor | None], b: tuple[torch.Tensor, torch.Tensor | None], n: int):
    """Per row, the dot product of the two text slots' vectors (unit vectors: their cosine), in chunks."""
    pair = Inputs(n=n, fields={}, texts=[a, b])
    out = torch.zeros(n)
    for s in range(0, n, 8192):
        x, y = pair.batch(slice(s, s + 8192))[1]
        out[s : s + 8192] = (x * y).sum(1)
    return out


class CtrModel:
    """A calibrated DeepFM ensemble click model: ``fit(train, val)``, ``predict``, ``predict_candidates``,
    ``save``, ``load``. With a ``profile_field`` it holds the taste profile of every customer it trained on."""

    def __init__(self, config: CtrConfig):
        self.config = config
        self.specs = [FieldSpec(**f) for f in config.fields]
        self.vocab: Vocabulary | None = None
        self.nets: list[DeepFM] = []
        self.packed: PackedDeepFM | None = None  # the nets as one network: what predictions run
        self.platt = Platt()
        self.profiles: TasteProfiles | None = None
        self.cosine_scale = (0.0, 0.0, 1.0, 1.0)  # mean of the two cosines, then their deviations
        self.history: list[dict[str, float]] = []

    def _build(self) -> DeepFM:
        cfg = self.config
        return DeepFM(
            self.vocab.sizes(),
            [s.name for s in self.specs if s.is_bag],
            cfg.text_slots + cfg.taste_slots,
            text_dim=cfg.text_dim,
            dim=cfg.dim,
            hidden=cfg.hidden,
            dropout=cfg.dropout,
            dense_dim=cfg.dense_dim,
        )

    def _inputs(self, n: int, fields: dict[str, np.ndarray], texts: list, keys: Sequence[str], tastes=None) -> Inputs:
        """Assemble the network inputs of ``n`` rows: fields, the data's text slots, then the two taste slots
        (the customers' profiles, or ``tastes`` = (liked, disliked, row ids) out of fold) and their cosines."""
        inputs = Inputs(
            n=n, fields={k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in fields.items()}, texts=texts
        )
        if not self.config.profile_field:
            return inputs
        if tastes is None:
            rows = self.profiles.index(keys)
            if len(keys) == 1:  # one customer for every row (serving's candidates): one shared row per taste
                tastes = (self.profiles.liked[rows], self.profiles.disliked[rows], None)
            else:
                tastes = (self.profiles.liked, self.profiles.disliked, rows)
        ids = None if tastes[2] is None else torch.from_numpy(tastes[2])
        inputs.texts = [*texts, (tensor(tastes[0]), ids), (tensor(tastes[1]), ids)]
        if self.config.dense_dim:
            cosines = torch.stack([slot_cosine(texts[0], slot, n) for slot in inputs.texts[-2:]], dim=1)
            mean, std = torch.tensor(self.cosine_scale[:2]), torch.tensor(self.cosine_scale[2:])
            inputs.dense = (cosines - mean) / std
        return inputs

    def _data_inputs(self, data: CtrData, tastes=None) -> Inputs:
        """The network inputs of ``data``'s rows (profiles looked up, unless ``tastes`` are given)."""
        texts = [
            (tensor(vectors), torch.from_numpy(np.asarray(ids, dtype=np.int64)))
            for ids, vectors in zip(data.text_ids[: self.config.text_slots], data.text_vectors)
        ]
        if len(texts) < self.config.text_slots:
            raise ValueError(f"the model reads {self.config.text_slots} text slots; the data has {len(texts)}")
        keys = data.keys(self.config.profile_field) if self.config.profile_field else []
        return self._inputs(len(data), self.vocab.encode(data.rows), texts, keys, tastes)

    def _logits(self, inputs: Inputs, nets: Sequence[DeepFM] | None = None, batch_size: int = 8192) -> np.ndarray:
        """Mean logit of ``nets`` (default: the whole ensemble, packed into one network) in batches; float64 (n,)."""
        nets = [self.packed] if nets is None else nets
        out = np.zeros(inputs.n, dtype=np.float64)
        with torch.inference_mode():  # networks are in eval mode outside their training epochs
            for net in nets:
                for s in range(0, inputs.n, batch_size):
                    out[s : s + batch_size] += net(*inputs.batch(slice(s, s + batch_size))).double().numpy()
        return out / len(nets)

    def fit(self, train: CtrData, val: CtrData, progress: Callable[[str], None] | None = None) -> CtrModel:
        """Train ``config.seeds`` networks on ``train``, each with early stopping on ``val``, then fit
        Platt scaling on their mean ``val`` logit.

        Taste profiles: training rows read out-of-fold ones, validation rows those of the training
        rows; the model keeps those of train + val, which serving and ``predict`` read.
        """
        cfg = self.config
        self.vocab = Vocabulary.build(self.specs, train.rows, min_count=cfg.min_count)
        tastes = None
        if cfg.profile_field:
            tastes = out_of_fold_tastes(train, cfg.profile_field, cfg.profile_folds, cfg.seed)
            self.profiles = self._profiles(train)
        x_train = self._data_inputs(train, tastes)
        if cfg.dense_dim:  # one scale for every later row: the training rows'
            mean, std = x_train.dense.mean(0), x_train.dense.std(0) + 1e-6
            self.cosine_scale = (*mean.tolist(), *std.tolist())
            x_train.dense = (x_train.dense - mean) / std
        x_val = self._data_inputs(val)
        if cfg.profile_field:
            self.profiles = self._profiles(train, val)
        rate = float(np.clip(np.mean(train.labels), 1e-4, 1 - 1e-4))
        self.nets = [
            self._fit_one(cfg.seed + k, rate, x_train, train.labels, x_val, val.labels, progress)
            for k in range(max(1, cfg.seeds))
        ]
        self.packed = PackedDeepFM(self.nets)
        self.platt = Platt.fit(self._logits(x_val), np.asarray(val.labels, dtype=np.float64))
        return self

    def _profiles(self, *parts: CtrData) -> TasteProfiles:
        """Taste profiles of the customers in ``parts`` (subsets of one CtrData)."""
        name = self.config.profile_field
        return TasteProfiles.build(
            np.concatenate([p.keys(name) for p in parts]),
            np.concatenate([p.text_ids[0] for p in parts]),
            parts[0].text_vectors[0],
            np.concatenate([p.labels for p in parts]),
        )

    def _fit_one(self, seed: int, rate: float, x_train: Inputs, y_train, x_val: Inputs, y_val, progress) -> DeepFM:
        """Train one network from ``seed``; return it at its best validation log loss."""
        cfg = self.config
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = self._build()
        with torch.no_grad():  # start at the base rate: rare clicks otherwise take epochs to get there
            net.bias.fill_(math.log(rate / (1 - rate)))
        y_train = torch.tensor(y_train, dtype=torch.float32)
        y_val = torch.tensor(y_val, dtype=torch.float64)
        first_order = [*net.linear.parameters(), net.bias]
        ids = {id(p) for p in first_order}
        optimizer = torch.optim.Adam(
            [
                {"params": [p for p in net.parameters() if id(p) not in ids]},
                # per-value biases of rare values get few updates: a faster rate lets them converge
                {"params": first_order, "lr": cfg.first_order_lr or cfg.lr},
            ],
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
        )
        best, best_state, bad = math.inf, None, 0
        for epoch in range(cfg.max_epochs):
            started = time.monotonic()
            train_loss = self._epoch(net, optimizer, x_train, y_train, rng)
            net.eval()
            val_logits = self._logits(x_val, nets=[net])
            val_loss = float(nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(val_logits), y_val))
            both = 0 < y_val.sum() < len(y_val)
            self.history.append(
                {
                    "seed": seed,
                    "epoch": epoch + 1,
                    "train_loss": round(train_loss, 4),
                    "val_loss": round(val_loss, 4),
                    "val_auc": round(float(roc_auc_score(y_val.numpy(), val_logits)), 4) if both else float("nan"),
                    "seconds": round(time.monotonic() - started, 1),
                }
            )
            if progress:
                progress(json.dumps(self.history[-1]))
            if val_loss < best - 1e-4:
                best, bad = val_loss, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return net

    def _epoch(self, net: DeepFM, optimizer, x_train: Inputs, y_train: torch.Tensor, rng) -> float:
        """One pass over the training rows in a random order; returns the mean training loss."""
        cfg = self.config
        tables = [*net.embeddings.values(), *net.linear.values()]
        net.train()
        total = 0.0
        for idx in torch.from_numpy(rng.permutation(x_train.n)).split(cfg.batch_size):
            loss = nn.functional.binary_cross_entropy_with_logits(net(*x_train.batch(idx)), y_train[idx])
            if cfg.embedding_l2:
                loss = loss + cfg.embedding_l2 * sum(emb.weight.pow(2).sum() for emb in tables)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        return total / x_train.n

    def predict_logits(self, data: CtrData) -> np.ndarray:
        """Return uncalibrated logits (the ensemble mean)."""
        return self._logits(self._data_inputs(data))

    def predict(self, data: CtrData) -> np.ndarray:
        """Return calibrated click probabilities (what ``evaluate ads`` measures)."""
        return self.platt(self.predict_logits(data))

    def predict_candidates(
        self, shared: dict[str, Any], rows: Sequence[dict[str, Any]], texts: Sequence[np.ndarray]
    ) -> np.ndarray:
        """Calibrated probabilities for candidates that share the context fields in ``shared`` (serving).

        ``texts`` holds one array per text slot: (n, dim) row-aligned with ``rows`` (the creatives),
        or (1, dim) for all (the context). The customer is ``shared[profile_field]``; their taste is
        looked up once. Scores equal :meth:`predict` on the same rows.
        """
        encoded = self.vocab.encode_candidates(shared, rows)
        slots = [(tensor(t), None) for t in texts[: self.config.text_slots]]
        keys = [shared.get(self.config.profile_field) or ""] if self.config.profile_field else []
        return self.platt(self._logits(self._inputs(len(rows), encoded, slots, keys)))

    def save(self, folder: Path, metrics: dict[str, Any] | None = None) -> None:
        """Write ``weights.safetensors`` (network k's tensors prefixed ``k.``, the taste profiles as
        ``profiles.liked`` / ``profiles.disliked``), ``config.json`` (config, vocabulary, customers,
        cosine scale, calibration) and ``metrics.json``."""
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"{k}.{name}": v.detach().cpu().contiguous()
            for k, net in enumerate(self.nets)
            for name, v in net.state_dict().items()
        }
        if self.profiles is not None:
            tensors["profiles.liked"] = torch.from_numpy(self.profiles.liked)
            tensors["profiles.disliked"] = torch.from_numpy(self.profiles.disliked)
        save_file(tensors, folder / "weights.safetensors")
        config = {
            "config": asdict(self.config),
            "vocabulary": self.vocab.index,
            "customers": self.profiles.keys if self.profiles is not None else [],
            "cosine_scale": list(self.cosine_scale),
            "platt": asdict(self.platt),
            "history": self.history,
        }
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "metrics.json").write_text(json.dumps(metrics or {}, indent=2))

    @classmethod
    def load(cls, folder: Path) -> CtrModel:
        """Rebuild a model written by :meth:`save`."""
        saved = json.loads((Path(folder) / "config.json").read_text())
        model = cls(CtrConfig(**saved["config"]))
        model.vocab = Vocabulary(model.specs, saved["vocabulary"])
        tensors = load_file(Path(folder) / "weights.safetensors")
        for k in range(max(1, model.config.seeds)):
            net = model._build()
            net.load_state_dict({name[len(f"{k}.") :]: v for name, v in tensors.items() if name.startswith(f"{k}.")})
            net.eval()
            model.nets.append(net)
        model.packed = PackedDeepFM(model.nets)
        if model.config.profile_field:
            liked, disliked = (tensors[f"profiles.{side}"].numpy() for side in ("liked", "disliked"))
            model.profiles = TasteProfiles(saved["customers"], liked, disliked)
        model.cosine_scale = tuple(saved["cosine_scale"])
        model.platt = Platt(**saved["platt"])
        model.history = saved.get("history", [])
        return model
