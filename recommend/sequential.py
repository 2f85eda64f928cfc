"""A SASRec-style sequential recommender: a small causal transformer over a customer's recent items.

Kang & McAuley (2018), "Self-Attentive Sequential Recommendation", with two changes that matter on
small CPU budgets:

- item embeddings start from the shared backbone's text embeddings, projected down to ``dim`` with
  PCA (so items that read alike start close, and rare items are not random); they are then trained;
- the loss is cross-entropy of the next item over the whole catalogue (every other item is a
  negative; with a few thousand items this is cheaper than sampling and usually better than
  SASRec's one sampled negative).

Sequences are a customer's items oldest first, each item kept at its newest occurrence (a
repeated item moves to the end), so the model learns what comes *next and new*. Histories longer
than ``max_len`` are cut into several training windows. Training stops after ``epochs`` or
``max_seconds``, whichever comes first, and uses torch's current thread count (set
``BACKBONE_TORCH_THREADS``/``OMP_NUM_THREADS``; the evaluator runs it on one thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recommend.ml import MODELS, History, Recommender, TrainSet, _load_arrays, _save_arrays

logger = logging.getLogger(__name__)


@dataclass
class SASRecConfig:
    """Hyper-parameters of :class:`SASRecModel` (picked on dev splits; see recommend/evaluation.py)."""

    dim: int = 64
    layers: int = 2
    heads: int = 2
    max_len: int = 50
    dropout: float = 0.2
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch: int = 128
    epochs: int = 30
    max_seconds: float = 150.0
    text_init: bool = True  # initialise item embeddings from the backbone's text embeddings (PCA)
    negatives: int = 0  # 0: softmax over every item; else this many uniform negatives shared by a batch
    seed: int = 7


def sequence(history: History) -> np.ndarray:
    """Return the history's items oldest first, each at its newest occurrence (ties: the given order)."""
    if len(history.items) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-history.steps, kind="stable")  # oldest first
    items = history.items[order]
    _, last = np.unique(items[::-1], return_index=True)
    keep = np.sort(len(items) - 1 - last)
    return items[keep].astype(np.int64)


def _windows(seq: np.ndarray, max_len: int) -> list[np.ndarray]:
    """Cut a sequence into windows of at most ``max_len + 1`` items, from the newest end back."""
    out = []
    end = len(seq)
    while end >= 2:
        start = max(0, end - max_len - 1)
        out.append(seq[start:end])
        end = start + 1 if start > 0 else 0
    return out


def text_projection(vectors: np.ndarray | None, n_items: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Return (n_items, dim) initial item embeddings: PCA of the text vectors, scaled to std 0.1 per
    column, or small random ones when there are no vectors."""
    if vectors is None or not np.any(vectors):
        return rng.normal(0.0, 0.1, size=(n_items, dim)).astype(np.float32)
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    k = min(dim, vt.shape[0])
    z = x @ vt[:k].T
    z /= np.maximum(z.std(axis=0, keepdims=True), 1e-8)
    out = rng.normal(0.0, 0.01, size=(n_items, dim))
    out[:, :k] = 0.1 * z
    return out.astype(np.float32)


def _build_net(n_items: int, cfg: SASRecConfig):
    import torch
    from torch import nn

    class Net(nn.Module):
        """Item + position embeddings, a causal pre-norm transformer, tied output embeddings."""

        def __init__(self):
            super().__init__()
            self.items = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)  # 0 = padding; item i is i + 1
            self.positions = nn.Embedding(cfg.max_len, cfg.dim)
            layer = nn.TransformerEncoderLayer(
                cfg.dim, cfg.heads, cfg.dim * 2, cfg.dropout, batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(cfg.dim)
            self.drop = nn.Dropout(cfg.dropout)
            nn.init.normal_(self.positions.weight, std=0.02)  # small: order matters, the items matter more
            self.register_buffer("causal", torch.triu(torch.ones(cfg.max_len, cfg.max_len, dtype=torch.bool), 1))

        def forward(self, seqs):
            """Return hidden states (B, L, dim) of left-padded item sequences (B, L)."""
            length = seqs.shape[1]
            pos = torch.arange(length, device=seqs.device)
            x = self.items(seqs) * (cfg.dim**0.5) + self.positions(pos)[None]
            x = self.drop(x)
            pad = seqs == 0
            # a fully padded prefix row would attend to nothing: let padding attend to itself
            mask = self.causal[:length, :length]
            h = self.encoder(x, mask=mask, src_key_padding_mask=pad & ~pad.all(dim=1, keepdim=True))
            return self.norm(h)

        def logits(self, h):
            return h @ self.items.weight[1:].T

    return Net()


class SASRecModel(Recommender):
    """Next-item transformer over the customer's recent items (see the module docstring)."""

    kind = "sasrec"

    def __init__(self, config: SASRecConfig | None = None):
        self.config = config or SASRecConfig()
        self.net = None

    def fit(self, train: TrainSet) -> SASRecModel:
        import torch

        cfg = self.config
        self.n_items = train.n_items
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.net = _build_net(self.n_items, cfg)
        init = text_projection(train.item_vectors if cfg.text_init else None, self.n_items, cfg.dim, rng)
        with torch.no_grad():
            self.net.items.weight[1:] = torch.from_numpy(init)
        windows = [w for h in train.histories for w in _windows(sequence(h), cfg.max_len)]
        windows += [b for b in train.extra_baskets if len(b) >= 2]
        if not windows:
            self.net.eval()
            return self
        seqs = np.zeros((len(windows), cfg.max_len + 1), dtype=np.int64)
        for r, w in enumerate(windows):
            w = w[-(cfg.max_len + 1) :]
            seqs[r, -len(w) :] = w + 1
        data = torch.from_numpy(seqs)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        started = time.monotonic()
        self.epochs_run = 0
        for epoch in range(cfg.epochs):
            self.net.train()
            perm = torch.from_numpy(rng.permutation(len(seqs)))
            total, count = 0.0, 0
            for start in range(0, len(perm), cfg.batch):
                batch = data[perm[start : start + cfg.batch]]
                inputs, targets = batch[:, :-1], batch[:, 1:]
                valid = (targets > 0) & (inputs > 0)
                h = self.net(inputs)[valid]
                loss = self._loss(h, targets[valid] - 1, rng)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * int(valid.sum())
                count += int(valid.sum())
            self.epochs_run = epoch + 1
            logger.info(
                "sasrec epoch %d loss %.4f (%.0fs)", epoch + 1, total / max(count, 1), time.monotonic() - started
            )
            if time.monotonic() - started > cfg.max_seconds:
                break
        self.net.eval()
        return self

    def _loss(self, h, targets, rng: np.random.Generator):
        """Cross-entropy of the true next item against all items, or against ``negatives`` shared samples."""
        import torch
        import torch.nn.functional as F

        k = self.config.negatives
        if not k or k >= self.n_items:
            return F.cross_entropy(self.net.logits(h), targets)
        table = self.net.items.weight[1:]
        negs = torch.from_numpy(rng.integers(0, self.n_items, size=k))
        pos = (h * table[targets]).sum(dim=1, keepdim=True)
        neg = h @ table[negs].T
        neg = neg.masked_fill(negs[None, :] == targets[:, None], float("-inf"))  # a sample that is the target
        return F.cross_entropy(torch.cat([pos, neg], dim=1), torch.zeros(len(targets), dtype=torch.long))

    def score(self, histories: Sequence[History]) -> np.ndarray:
        import torch

        cfg = self.config
        out = np.zeros((len(histories), self.n_items), dtype=np.float32)
        seqs = np.zeros((len(histories), cfg.max_len), dtype=np.int64)
        rows = []
        for r, h in enumerate(histories):
            s = sequence(h)[-cfg.max_len :]
            if len(s):
                seqs[r, -len(s) :] = s + 1
                rows.append(r)
        if not rows:
            return out
        with torch.inference_mode():
            x = torch.from_numpy(seqs[rows])
            h = self.net(x)[:, -1]
            out[rows] = self.net.logits(h).numpy()
        return out

    def save(self, folder: Path) -> None:
        arrays = {k: v.detach().cpu().numpy() for k, v in self.net.state_dict().items() if k != "causal"}
        _save_arrays(folder, self.kind, {"config": asdict(self.config), "n_items": self.n_items}, arrays)

    @classmethod
    def load(cls, folder: Path) -> SASRecModel:
        import torch

        config, arrays = _load_arrays(folder)
        model = cls(SASRecConfig(**config["config"]))
        model.n_items = int(config["n_items"])
        model.net = _build_net(model.n_items, model.config)
        state = {k: torch.from_numpy(v) for k, v in arrays.items()}
        model.net.load_state_dict(state, strict=False)
        model.net.eval()
        return model


MODELS[SASRecModel.kind] = SASRecModel
