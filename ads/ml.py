"""Click-through-rate prediction: the one pCTR recipe that the platform serves and ``evaluate ads`` measures.

Plain PyTorch/NumPy/SciPy, no ORM. A row is a dict ``field -> str`` (single-valued fields) or
``field -> list[str]`` (bag fields such as genres or query words), plus, per text slot, an index
into a matrix of backbone text embeddings (slot 0: the ad creative; then context texts such as
the query). :func:`fit_ctr_model` is the recipe; :class:`CtrModel` (``fit / predict /
predict_candidates / save / load``) is what it returns and what serving loads: a small ensemble
of DeepFM networks that also read the customer's taste profiles (:class:`TasteProfiles`), with
Platt scaling fitted on a validation split that the networks never trained on.

The rows and their encoding are in :mod:`ads.data`, the taste profiles in :mod:`ads.tastes`, the
networks and their inputs in :mod:`ads.network`, the metrics in :mod:`ads.metrics`; the names that
callers outside the app use are importable from here too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score
from torch import nn

from ads.data import CtrData, FieldSpec, Vocabulary
from ads.metrics import bootstrap_auc, ctr_metrics
from ads.network import DeepFM, Inputs, PackedDeepFM, slot_cosine, tensor
from ads.tastes import TasteProfiles, out_of_fold_tastes

__all__ = [
    "PROFILE_FIELD",
    "RECIPE_KEYS",
    "CtrConfig",
    "CtrData",
    "CtrModel",
    "Platt",
    "TasteProfiles",
    "bootstrap_auc",
    "ctr_metrics",
    "fit_ctr_model",
    "out_of_fold_tastes",
]

PROFILE_FIELD = "customer"  # the field whose taste profiles the recipe adds, when the rows have it


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


@dataclass
class CtrConfig:
    """Hyper-parameters of :class:`CtrModel`; the defaults are the recipe, picked on the MovieLens dev split
    (the figures: ``bench/reports/ads-tuning.md``)."""

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
