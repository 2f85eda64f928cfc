"""Click-through-rate prediction: a DeepFM over categorical fields plus backbone text embeddings.

Plain PyTorch/NumPy/scikit-learn, no ORM. A row is a dict ``field -> str`` (single-valued
fields) or ``field -> list[str]`` (bag fields such as genres or tags), plus optional indices
into a matrix of text embeddings (e.g. the ad creative, the query or product context). The
model (:class:`CtrModel`) has the ``fit / predict / save / load`` interface; its probabilities
are calibrated with Platt scaling fitted on a validation split that the network never trained on.
"""

from __future__ import annotations

import json
import logging
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
from sklearn.metrics import log_loss, roc_auc_score
from torch import nn

logger = logging.getLogger(__name__)

UNKNOWN = 0  # index of unseen / rare values in every field vocabulary
PAD = 0


# --- encoding -------------------------------------------------------------------------------


@dataclass
class FieldSpec:
    """One input field: ``cat`` (one value per row) or ``bag`` (a list of values per row)."""

    name: str
    kind: str = "cat"
    max_len: int = 8


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
            counts: Counter[str] = Counter()
            for row in rows:
                value = row.get(spec.name)
                if spec.kind == "bag":
                    counts.update(value or [])
                elif value is not None:
                    counts[value] += 1
            frequent = sorted(v for v, c in counts.items() if c >= min_count)
            index[spec.name] = {v: i + 1 for i, v in enumerate(frequent)}
        return cls(fields, index)

    def encode_candidates(self, shared: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Like :meth:`encode` for rows that all carry the ``shared`` values, looked up once and repeated."""
        n = len(rows)
        single = self.encode([shared])
        out: dict[str, np.ndarray] = {}
        for spec in self.fields:
            if spec.name in shared:
                out[spec.name] = np.broadcast_to(single[spec.name], (n, *single[spec.name].shape[1:]))
            elif spec.kind == "bag":
                out[spec.name] = self.encode([{spec.name: row.get(spec.name)} for row in rows])[spec.name]
            else:
                lookup = self.index[spec.name]
                out[spec.name] = np.fromiter(
                    (lookup.get(row.get(spec.name), UNKNOWN) for row in rows), dtype=np.int64, count=n
                )
        return out

    def sizes(self) -> dict[str, int]:
        return {name: len(values) + 1 for name, values in self.index.items()}

    def encode(self, rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Return per field an int64 array: (n,) for ``cat`` fields, (n, max_len) for ``bag`` fields."""
        out: dict[str, np.ndarray] = {}
        n = len(rows)
        for spec in self.fields:
            lookup = self.index[spec.name]
            if spec.kind == "bag":
                arr = np.zeros((n, spec.max_len), dtype=np.int64)
                for i, row in enumerate(rows):
                    ids = [lookup.get(v, UNKNOWN) for v in (row.get(spec.name) or [])]
                    ids = [x for x in ids if x != UNKNOWN][: spec.max_len]
                    arr[i, : len(ids)] = ids
            else:
                arr = np.fromiter((lookup.get(row.get(spec.name), UNKNOWN) for row in rows), dtype=np.int64, count=n)
            out[spec.name] = arr
        return out


# --- network --------------------------------------------------------------------------------


class DeepFM(nn.Module):
    """DeepFM (Guo et al. 2017): first-order weights + FM pairwise interactions + an MLP.

    Every field (categorical, bag of values, projected text embedding, or the projected dense
    features) becomes one ``dim``-wide vector; the FM term sums their pairwise dot products and
    the MLP reads their concatenation. Text embeddings enter through a linear projection per
    text slot; ``dense_dim`` real-valued features (e.g. a text cosine) through one more.
    ``cross_layers`` > 0 adds a DCN-v2 cross network (Wang et al. 2021) beside the MLP:
    ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` over the same concatenation, read out linearly.
    """

    def __init__(
        self,
        sizes: dict[str, int],
        bag_fields: Sequence[str],
        text_slots: int,
        text_dim: int = 384,
        dim: int = 16,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.2,
        dense_dim: int = 0,
        cross_layers: int = 0,
    ):
        super().__init__()
        self.cat_fields = [name for name in sizes if name not in set(bag_fields)]
        self.bag_fields = list(bag_fields)
        self.embeddings = nn.ModuleDict({name: nn.Embedding(n, dim, padding_idx=0) for name, n in sizes.items()})
        self.linear = nn.ModuleDict({name: nn.Embedding(n, 1, padding_idx=0) for name, n in sizes.items()})
        self.text_proj = nn.ModuleList([nn.Linear(text_dim, dim) for _ in range(text_slots)])
        self.text_linear = nn.ModuleList([nn.Linear(text_dim, 1) for _ in range(text_slots)])
        self.dense_proj = nn.Linear(dense_dim, dim) if dense_dim else None
        self.dense_linear = nn.Linear(dense_dim, 1) if dense_dim else None
        self.bias = nn.Parameter(torch.zeros(1))
        n_fields = len(sizes) + text_slots + (1 if dense_dim else 0)
        layers: list[nn.Module] = []
        width = n_fields * dim
        self.cross = nn.ModuleList([nn.Linear(width, width) for _ in range(cross_layers)])
        self.cross_out = nn.Linear(width, 1) if cross_layers else None
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        for emb in self.embeddings.values():
            nn.init.normal_(emb.weight, std=0.01)
        for emb in self.linear.values():
            nn.init.zeros_(emb.weight)
        if dense_dim:  # start as quiet as the embeddings: the default init lets unit-scale features swamp the FM
            nn.init.normal_(self.dense_proj.weight, std=0.01)
            nn.init.zeros_(self.dense_proj.bias)
            nn.init.zeros_(self.dense_linear.weight)

    def field_vectors(
        self, inputs: dict[str, torch.Tensor], texts: Sequence[torch.Tensor], dense: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (n, fields, dim) field vectors and the (n,) first-order term."""
        vectors, first = [], self.bias.expand(next(iter(inputs.values())).shape[0])
        for name in self.cat_fields:
            x = inputs[name]
            vectors.append(self.embeddings[name](x))
            first = first + self.linear[name](x).squeeze(-1)
        for name in self.bag_fields:
            x = inputs[name]
            mask = (x != PAD).float().unsqueeze(-1)
            count = mask.sum(1).clamp(min=1.0)
            vectors.append((self.embeddings[name](x) * mask).sum(1) / count)
            first = first + (self.linear[name](x) * mask).sum(1).squeeze(-1) / count.squeeze(-1)
        n = first.shape[0]
        for proj, lin, t in zip(self.text_proj, self.text_linear, texts):
            # a single row (one context for all candidates) is projected once and repeated
            vectors.append(proj(t).expand(n, -1))
            first = first + lin(t).squeeze(-1).expand(n)
        if self.dense_proj is not None:
            vectors.append(self.dense_proj(dense))
            first = first + self.dense_linear(dense).squeeze(-1)
        return torch.stack(vectors, dim=1), first

    def forward(
        self, inputs: dict[str, torch.Tensor], texts: Sequence[torch.Tensor] = (), dense: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return click logits (n,)."""
        v, first = self.field_vectors(inputs, texts, dense)
        fm = 0.5 * (v.sum(1).pow(2) - v.pow(2).sum(1)).sum(1)
        x0 = v.flatten(1)
        out = first + fm + self.mlp(x0).squeeze(-1)
        if self.cross_out is not None:
            x = x0
            for layer in self.cross:
                x = x0 * layer(x) + x
            out = out + self.cross_out(x).squeeze(-1)
        return out


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
    """Percentile bootstrap 95% interval of the AUC (resampling rows; resamples with one class skipped)."""
    rng = np.random.default_rng(seed)
    labels, probs = np.asarray(labels), np.asarray(probs)
    values = []
    for _ in range(rounds):
        idx = rng.integers(0, len(labels), len(labels))
        y = labels[idx]
        if 0 < y.sum() < len(y):
            values.append(roc_auc_score(y, probs[idx]))
    low, high = np.percentile(values, [2.5, 97.5])
    return {
        "auc_ci95_low": round(float(low), 4),
        "auc_ci95_high": round(float(high), 4),
        "bootstrap_rounds": len(values),
    }


# --- the model ------------------------------------------------------------------------------


@dataclass
class CtrConfig:
    """Hyper-parameters of :class:`CtrModel` (defaults tuned on the MovieLens dev split)."""

    fields: list[dict[str, Any]] = field(default_factory=list)
    text_slots: int = 0
    text_dim: int = 384
    dim: int = 16
    hidden: list[int] = field(default_factory=lambda: [256, 128])
    dropout: float = 0.2
    lr: float = 2e-3
    first_order_lr: float | None = None
    weight_decay: float = 1e-6
    embedding_l2: float = 1e-6
    batch_size: int = 1024
    max_epochs: int = 20
    patience: int = 2
    min_count: int = 1
    seed: int = 13
    dense_dim: int = 0  # real-valued features per row (CtrData.dense), e.g. text cosines
    cross_layers: int = 0  # DCN-v2 cross layers beside the MLP
    seeds: int = 1  # networks trained with seeds seed, seed+1, ...; their logits are averaged


@dataclass
class CtrData:
    """Rows plus, per text slot, the row -> text index and the text embedding matrix."""

    rows: list[dict[str, Any]]
    labels: np.ndarray | None = None
    text_ids: list[np.ndarray] = field(default_factory=list)
    text_vectors: list[np.ndarray] = field(default_factory=list)
    dense: np.ndarray | None = None  # (n, dense_dim) real-valued features, or None

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, idx: np.ndarray) -> CtrData:
        return CtrData(
            rows=[self.rows[i] for i in idx],
            labels=None if self.labels is None else self.labels[idx],
            text_ids=[t[idx] for t in self.text_ids],
            text_vectors=self.text_vectors,
            dense=None if self.dense is None else self.dense[idx],
        )


class CtrModel:
    """A calibrated DeepFM click model: ``fit(train, val)``, ``predict``, ``save``, ``load``.

    With ``config.seeds`` > 1 it is a small ensemble: that many networks trained alike from
    different seeds, whose logits are averaged before one Platt calibration.
    """

    def __init__(self, config: CtrConfig):
        self.config = config
        self.specs = [FieldSpec(**f) for f in config.fields]
        self.vocab: Vocabulary | None = None
        self.nets: list[DeepFM] = []
        self.platt = Platt()
        self.history: list[dict[str, float]] = []

    def _build(self) -> DeepFM:
        cfg = self.config
        return DeepFM(
            self.vocab.sizes(),
            [s.name for s in self.specs if s.kind == "bag"],
            cfg.text_slots,
            text_dim=cfg.text_dim,
            dim=cfg.dim,
            hidden=cfg.hidden,
            dropout=cfg.dropout,
            dense_dim=cfg.dense_dim,
            cross_layers=cfg.cross_layers,
        )

    def _tensors(self, data: CtrData) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], torch.Tensor | None]:
        inputs = {k: torch.from_numpy(v) for k, v in self.vocab.encode(data.rows).items()}
        texts = [
            torch.from_numpy(np.ascontiguousarray(vectors[ids], dtype=np.float32))
            for ids, vectors in zip(data.text_ids[: self.config.text_slots], data.text_vectors)
        ]
        dense = None
        if self.config.dense_dim:
            if data.dense is None or data.dense.shape[1] != self.config.dense_dim:
                raise ValueError(f"the model expects {self.config.dense_dim} dense features per row")
            dense = torch.from_numpy(np.ascontiguousarray(data.dense, dtype=np.float32))
        return inputs, texts, dense

    def _logits(self, inputs, texts, dense=None, nets: Sequence[DeepFM] | None = None, batch_size: int = 8192):
        """Mean logit of ``nets`` (default: all of the ensemble) in batches; returns float64 (n,)."""
        nets = self.nets if nets is None else nets
        n = next(iter(inputs.values())).shape[0]
        out = np.zeros(n, dtype=np.float64)
        with torch.inference_mode():
            for net in nets:
                net.eval()
                for s in range(0, n, batch_size):
                    part = {k: v[s : s + batch_size] for k, v in inputs.items()}
                    d = None if dense is None else dense[s : s + batch_size]
                    out[s : s + batch_size] += net(part, [t[s : s + batch_size] for t in texts], d).double().numpy()
        return out / len(nets)

    def fit(self, train: CtrData, val: CtrData, progress: Callable[[str], None] | None = None) -> CtrModel:
        """Train ``config.seeds`` networks on ``train``, each with early stopping on ``val``, then fit
        Platt scaling on their mean ``val`` logit."""
        self.vocab = Vocabulary.build(self.specs, train.rows, min_count=self.config.min_count)
        x_train, t_train, d_train = self._tensors(train)
        x_val, t_val, d_val = self._tensors(val)
        rate = float(np.clip(np.mean(train.labels), 1e-4, 1 - 1e-4))
        self.nets = []
        for k in range(max(1, self.config.seeds)):
            net = self._fit_one(
                self.config.seed + k,
                rate,
                (x_train, t_train, d_train),
                train.labels,
                (x_val, t_val, d_val),
                val.labels,
                progress,
            )
            self.nets.append(net)
        self.platt = Platt.fit(self._logits(x_val, t_val, d_val), np.asarray(val.labels, dtype=np.float64))
        return self

    def _fit_one(self, seed: int, rate: float, train_inputs, train_labels, val_inputs, val_labels, progress):
        """Train one network from ``seed``; return it at its best validation log loss."""
        cfg = self.config
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = self._build()
        with torch.no_grad():  # start at the base rate: rare clicks otherwise take epochs to get there
            net.bias.fill_(math.log(rate / (1 - rate)))
        x_train, t_train, d_train = train_inputs
        y_train = torch.tensor(train_labels, dtype=torch.float32)
        y_val = np.asarray(val_labels, dtype=np.float64)
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
        tables = [*net.embeddings.values(), *net.linear.values()]
        best, best_state, bad = math.inf, None, 0
        n = len(y_train)
        for epoch in range(cfg.max_epochs):
            started = time.monotonic()
            net.train()
            order = torch.from_numpy(rng.permutation(n))
            total = 0.0
            for s in range(0, n, cfg.batch_size):
                idx = order[s : s + cfg.batch_size]
                d = None if d_train is None else d_train[idx]
                logits = net({k: v[idx] for k, v in x_train.items()}, [t[idx] for t in t_train], d)
                loss = nn.functional.binary_cross_entropy_with_logits(logits, y_train[idx])
                if cfg.embedding_l2:
                    loss = loss + cfg.embedding_l2 * sum(emb.weight.pow(2).sum() for emb in tables)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            val_logits = self._logits(*val_inputs, nets=[net])
            val_loss = float(
                nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(val_logits), torch.from_numpy(y_val))
            )
            val_auc = float(roc_auc_score(y_val, val_logits)) if 0 < y_val.sum() < len(y_val) else float("nan")
            self.history.append(
                {
                    "seed": seed,
                    "epoch": epoch + 1,
                    "train_loss": round(total / n, 4),
                    "val_loss": round(val_loss, 4),
                    "val_auc": round(val_auc, 4),
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

    def predict_logits(self, data: CtrData) -> np.ndarray:
        """Return uncalibrated logits (the ensemble mean)."""
        return self._logits(*self._tensors(data))

    def predict(self, data: CtrData) -> np.ndarray:
        """Return calibrated click probabilities."""
        return self.platt(self.predict_logits(data))

    def predict_candidates(
        self, shared: dict[str, Any], rows: Sequence[dict[str, Any]], texts: Sequence[np.ndarray]
    ) -> np.ndarray:
        """Calibrated probabilities for candidates that share the context fields in ``shared`` (serving).

        ``texts`` holds one array per text slot: (n, dim) row-aligned with ``rows``, or (1, dim) for all.
        Models with dense features are not served this way.
        """
        if self.config.dense_dim:
            raise ValueError("predict_candidates does not take dense features")
        encoded = self.vocab.encode_candidates(shared, rows)
        inputs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in encoded.items()}
        tensors = [torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32)) for t in texts[: self.config.text_slots]]
        return self.platt(self._logits(inputs, tensors))

    def save(self, folder: Path, metrics: dict[str, Any] | None = None) -> None:
        """Write ``weights.safetensors`` (network k's tensors prefixed ``k.``), ``config.json`` (config,
        vocabulary, calibration), ``metrics.json``."""
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"{k}.{name}": v.detach().cpu().contiguous()
            for k, net in enumerate(self.nets)
            for name, v in net.state_dict().items()
        }
        save_file(tensors, folder / "weights.safetensors")
        config = {
            "config": asdict(self.config),
            "vocabulary": self.vocab.index,
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
        model.platt = Platt(**saved["platt"])
        model.history = saved.get("history", [])
        return model


# --- baselines ------------------------------------------------------------------------------


def hashed_tokens(rows: Sequence[dict[str, Any]], specs: Sequence[FieldSpec]) -> list[list[str]]:
    """Return each row as ``field=value`` tokens (every value of bag fields), for feature hashing."""
    out = []
    for row in rows:
        tokens = []
        for spec in specs:
            value = row.get(spec.name)
            if spec.kind == "bag":
                tokens.extend(f"{spec.name}={v}" for v in (value or []))
            elif value is not None:
                tokens.append(f"{spec.name}={value}")
        out.append(tokens)
    return out


def fit_hashed_logistic(
    train: CtrData, val: CtrData, specs: Sequence[FieldSpec], *, n_features: int = 2**20, seed: int = 13
) -> Callable[[CtrData], np.ndarray]:
    """Logistic regression on hashed one-hot ``field=value`` features; C picked by validation log loss."""
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.linear_model import LogisticRegression

    hasher = FeatureHasher(n_features=n_features, input_type="string", alternate_sign=False)
    x_train = hasher.transform(hashed_tokens(train.rows, specs))
    x_val = hasher.transform(hashed_tokens(val.rows, specs))
    best = None
    for c in (0.03, 0.1, 0.3, 1.0):
        model = LogisticRegression(C=c, max_iter=2000, solver="liblinear", random_state=seed)
        model.fit(x_train, train.labels)
        loss = log_loss(val.labels, model.predict_proba(x_val)[:, 1], labels=[0, 1])
        if best is None or loss < best[0]:
            best = (loss, model)
    model = best[1]
    return lambda data: model.predict_proba(hasher.transform(hashed_tokens(data.rows, specs)))[:, 1]


def lightgbm_matrix(
    rows: Sequence[dict[str, Any]], vocab: Vocabulary, top_bag: int = 50
) -> tuple[np.ndarray, list[int]]:
    """Categorical fields as integer codes (LightGBM categoricals), bag fields as multi-hot of their top values."""
    encoded = vocab.encode(rows)
    columns, categorical = [], []
    for spec in vocab.fields:
        arr = encoded[spec.name]
        if spec.kind == "bag":
            for value_id in range(1, min(top_bag, len(vocab.index[spec.name])) + 1):
                columns.append((arr == value_id).any(axis=1).astype(np.float32))
        else:
            categorical.append(len(columns))
            columns.append(arr.astype(np.float32))
    return np.stack(columns, axis=1), categorical


# LightGBM settings tried on validation (log loss picks one): the previous fixed setting, smaller
# trees with stronger smoothing of the high-cardinality categoricals (user, movie, IP...), and
# larger trees with weaker smoothing
LIGHTGBM_GRID = (
    {"num_leaves": 63, "min_data_in_leaf": 50, "cat_smooth": 10},
    {"num_leaves": 15, "min_data_in_leaf": 100, "cat_smooth": 50},
    {"num_leaves": 127, "min_data_in_leaf": 20, "cat_smooth": 5, "min_data_per_group": 20},
)


def fit_lightgbm(
    train: CtrData,
    val: CtrData,
    specs: Sequence[FieldSpec],
    *,
    seed: int = 13,
    threads: int = 1,
    grid: Sequence[dict[str, Any]] = LIGHTGBM_GRID,
) -> Callable[[CtrData], np.ndarray]:
    """LightGBM (gbdt) on the same fields, categoricals native; the ``grid`` setting with the best
    validation log loss, its rounds chosen by early stopping on ``val``.

    Bag fields enter as indicators of their 50 most frequent values (by vocabulary order of frequency).
    """
    import lightgbm as lgb

    vocab = Vocabulary.build(specs, train.rows, min_count=1)
    # order bag vocabularies by frequency so that "top" means most frequent
    for spec in specs:
        if spec.kind == "bag":
            counts = Counter(v for row in train.rows for v in (row.get(spec.name) or []))
            vocab.index[spec.name] = {v: i + 1 for i, (v, _) in enumerate(counts.most_common())}
    x_train, cats = lightgbm_matrix(train.rows, vocab)
    x_val, _ = lightgbm_matrix(val.rows, vocab)
    base = {
        "objective": "binary",
        "learning_rate": 0.05,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "max_cat_to_onehot": 4,
        "seed": seed,
        "num_threads": threads,
        "verbose": -1,
    }
    # the grid changes min_data_in_leaf on the same Dataset: LightGBM needs feature_pre_filter off for that
    train_set = lgb.Dataset(
        x_train, train.labels, categorical_feature=cats, free_raw_data=False, params={"feature_pre_filter": False}
    )
    val_set = lgb.Dataset(x_val, val.labels, categorical_feature=cats, reference=train_set)
    best = None
    for setting in grid:
        booster = lgb.train(
            {**base, **setting},
            train_set,
            num_boost_round=2000,
            valid_sets=[val_set],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        loss = booster.best_score["valid_0"]["binary_logloss"]
        logger.info("lightgbm %s: validation log loss %.4f at %d rounds", setting, loss, booster.best_iteration)
        if best is None or loss < best[0]:
            best = (loss, booster)
    booster = best[1]
    return lambda data: booster.predict(lightgbm_matrix(data.rows, vocab)[0], num_iteration=booster.best_iteration)


# --- the text part on the shared backbone ---------------------------------------------------


class AdTextHead(nn.Module):
    """Click logit from the ad creative and context embeddings: an MLP over [ad, context, ad * context]."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3 * dim, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 1))

    def forward(self, ad: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([ad, context, ad * context], dim=1)).squeeze(-1)


class AdTextTask:
    """The ads task of the shared multi-task trainer: click prediction from (creative, context) texts.

    Fine-tuning the backbone on it makes the creative and context embeddings that the DeepFM
    reads click-aware. ``examples`` are (creative text, context text, clicked) in time order;
    the last ``val_fraction`` is the validation split. Clicks are rare, so each training batch
    is balanced-ish by keeping every click and sampling non-clicks (``negatives_per_click``).
    """

    name = "ads_ctr"

    def __init__(
        self,
        examples: Sequence[tuple[str, str, bool]],
        *,
        weight: float = 1.0,
        val_fraction: float = 0.2,
        negatives_per_click: int = 3,
        eval_batch_size: int = 128,
    ):
        if len(examples) < 10:
            raise ValueError(f"the ads text task needs served impressions; found {len(examples)}")
        cut = int(len(examples) * (1 - val_fraction))
        self.train, self.val = list(examples[:cut]), list(examples[cut:])
        self.weight = weight
        self.negatives_per_click = negatives_per_click
        self.eval_batch_size = eval_batch_size

    def build_head(self, dim: int) -> nn.Module:
        return AdTextHead(dim)

    def batches(self, rng, batch_size: int) -> list[Any]:
        clicks = [e for e in self.train if e[2]]
        others = [e for e in self.train if not e[2]]
        keep = rng.sample(others, min(len(others), max(batch_size, len(clicks) * self.negatives_per_click)))
        pool = clicks + keep
        rng.shuffle(pool)
        return [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]

    def _logits(self, encoder, head: nn.Module, batch) -> torch.Tensor:
        ads = encoder(encoder.tokenize([e[0] or " " for e in batch]))
        contexts = encoder(encoder.tokenize([e[1] or " " for e in batch]))
        return head(ads, contexts)

    def loss(self, encoder, head: nn.Module, batch) -> torch.Tensor:
        labels = torch.tensor([float(e[2]) for e in batch], device=encoder.device)
        return nn.functional.binary_cross_entropy_with_logits(self._logits(encoder, head, batch), labels)

    def _auc(self, scores: np.ndarray) -> float:
        labels = np.asarray([float(e[2]) for e in self.val])
        return round(float(roc_auc_score(labels, scores)), 4) if 0 < labels.sum() < len(labels) else float("nan")

    @torch.inference_mode()
    def evaluate(self, encoder, head: nn.Module) -> dict[str, float]:
        scores = []
        for s in range(0, len(self.val), self.eval_batch_size):
            scores.append(self._logits(encoder, head, self.val[s : s + self.eval_batch_size]).float().cpu().numpy())
        return {"auc": self._auc(np.concatenate(scores)), "n": len(self.val)}

    def baselines(self, encoder) -> dict[str, dict[str, float]]:
        ads = encoder.encode([e[0] for e in self.val], batch_size=self.eval_batch_size)
        contexts = encoder.encode([e[1] for e in self.val], batch_size=self.eval_batch_size)
        return {"cosine_untuned": {"auc": self._auc((ads * contexts).sum(1)), "n": len(self.val)}}

    def head_config(self) -> dict[str, Any]:
        return {"kind": "ad_text_ctr", "inputs": ["creative", "context"]}
