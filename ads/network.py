"""The pCTR networks, plain PyTorch: one DeepFM, an ensemble of them packed into one set of tensors,
and :class:`Inputs`, what they read for a set of rows.

Inputs are dicts of field value indices (0 = padding / unknown) plus text embeddings and dense
features; an input with a single row (a request's shared fields, its context, the customer's
taste) is embedded or projected once and repeated for every candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

PAD = 0


class DeepFM(nn.Module):
    """DeepFM (Guo et al. 2017): first-order weights + FM pairwise interactions + an MLP.

    Every field (categorical, bag of values, projected text embedding, or the projected dense
    features) becomes one ``dim``-wide vector; the FM term sums their pairwise dot products and
    the MLP reads their concatenation. Text embeddings enter through a linear projection per
    text slot; ``dense_dim`` real-valued features (the taste cosines) through one more.
    """

    def __init__(
        self,
        sizes: dict[str, int],
        bag_fields: Sequence[str],
        text_slots: int,
        text_dim: int = 384,
        dim: int = 16,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.2,
        dense_dim: int = 0,
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
        width = (len(sizes) + text_slots + (1 if dense_dim else 0)) * dim
        layers: list[nn.Module] = []
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
        """Return (n, fields, dim) field vectors and the (n,) first-order term.

        An input with a single row (a request's shared fields, its context, its customer's taste)
        is embedded or projected once and repeated for all n candidates.
        """
        n = max(x.shape[0] for x in [*inputs.values(), *texts, *([] if dense is None else [dense])])
        vectors, first = [], self.bias.expand(n)
        for name in self.cat_fields:
            x = inputs[name]
            vectors.append(self.embeddings[name](x).expand(n, -1))
            first = first + self.linear[name](x).squeeze(-1)
        for name in self.bag_fields:
            x = inputs[name]
            mask = (x != PAD).float().unsqueeze(-1)
            count = mask.sum(1).clamp(min=1.0)
            vectors.append(((self.embeddings[name](x) * mask).sum(1) / count).expand(n, -1))
            first = first + (self.linear[name](x) * mask).sum(1).squeeze(-1) / count.squeeze(-1)
        for proj, lin, t in zip(self.text_proj, self.text_linear, texts):
            vectors.append(proj(t).expand(n, -1))
            first = first + lin(t).squeeze(-1)
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
        return first + fm + self.mlp(v.flatten(1)).squeeze(-1)


class PackedDeepFM(nn.Module):
    """K trained DeepFM networks of one architecture evaluated as one: each field's K embedding tables
    side by side in one table, each text projection's K weights in one matrix, the K MLPs as batched
    matrix products. Returns the K networks' mean logit, as running them one by one would, with the
    operator count of one network: what ``predict`` and serving score with.
    """

    def __init__(self, nets: Sequence[DeepFM]):
        super().__init__()
        first = nets[0]
        self.k = len(nets)
        self.cat_fields, self.bag_fields = first.cat_fields, first.bag_fields
        with torch.no_grad():
            self.embeddings = {n: torch.cat([net.embeddings[n].weight for net in nets], 1) for n in first.embeddings}
            self.linear = {n: torch.cat([net.linear[n].weight for net in nets], 1) for n in first.linear}
            self.dim = first.embeddings[next(iter(first.embeddings))].embedding_dim
            self.text = [
                self._stack([net.text_proj[i] for net in nets], [net.text_linear[i] for net in nets])
                for i in range(len(first.text_proj))
            ]
            self.dense = None
            if first.dense_proj is not None:
                self.dense = self._stack([net.dense_proj for net in nets], [net.dense_linear for net in nets])
            self.bias = torch.cat([net.bias for net in nets])
            layers = [[m for m in net.mlp if isinstance(m, nn.Linear)] for net in nets]
            self.mlp = [
                (
                    torch.stack([net_layers[j].weight.T for net_layers in layers]),
                    torch.stack([net_layers[j].bias for net_layers in layers]),
                )
                for j in range(len(layers[0]))
            ]

    @staticmethod
    def _stack(projections: Sequence[nn.Linear], linears: Sequence[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor]:
        """One (in, K*dim + K) weight and bias for K projections and their K first-order read-outs."""
        weight = torch.cat([p.weight for p in projections] + [lin.weight for lin in linears]).T
        bias = torch.cat([p.bias for p in projections] + [lin.bias for lin in linears])
        return weight.contiguous(), bias

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A packed (rows, K*dim + K) projection as (rows, K, dim) vectors and (rows, K) first-order terms."""
        kd = self.k * self.dim
        return x[:, :kd].reshape(-1, self.k, self.dim), x[:, kd:]

    def field_vectors(
        self, inputs: dict[str, torch.Tensor], texts: Sequence[torch.Tensor], dense: torch.Tensor | None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each field's (rows, K, dim) vectors in the networks' field order, rows being n or 1 (shared
        by all), and the (n, K) first-order terms."""
        vectors, first = [], self.bias.unsqueeze(0)
        for name in self.cat_fields:
            x = inputs[name]
            vectors.append(self.embeddings[name][x].reshape(-1, self.k, self.dim))
            first = first + self.linear[name][x]
        for name in self.bag_fields:
            x = inputs[name]
            mask = (x != PAD).float().unsqueeze(-1)
            count = mask.sum(1).clamp(min=1.0)
            vectors.append(((self.embeddings[name][x] * mask).sum(1) / count).reshape(-1, self.k, self.dim))
            first = first + (self.linear[name][x] * mask).sum(1) / count
        projected = [(weight, bias, t) for (weight, bias), t in zip(self.text, texts)]
        if self.dense is not None:
            projected.append((*self.dense, dense))
        for weight, bias, t in projected:
            v, lin = self._split(torch.addmm(bias, t, weight))
            vectors.append(v)
            first = first + lin
        return vectors, first

    def forward(
        self, inputs: dict[str, torch.Tensor], texts: Sequence[torch.Tensor] = (), dense: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the ensemble's mean click logit (n,).

        Fields shared by every row enter the FM sums and the first MLP layer once, not once per row.
        """
        vectors, first = self.field_vectors(inputs, texts, dense)
        n = max(v.shape[0] for v in vectors)
        parts = [[i for i, v in enumerate(vectors) if (v.shape[0] == 1) == shared] for shared in (True, False)]
        weight, bias = self.mlp[0]
        per_field = weight.reshape(self.k, len(vectors), self.dim, -1)
        total, squares, h = 0.0, 0.0, bias.unsqueeze(1)  # (K, 1, hidden)
        for idx in parts:
            if not idx:
                continue
            v = torch.stack([vectors[i] for i in idx], dim=2)  # (rows, K, fields, dim)
            total, squares = total + v.sum(2), squares + v.pow(2).sum((2, 3))
            w = per_field[:, idx].reshape(self.k, len(idx) * self.dim, -1)
            h = h + torch.bmm(v.flatten(2).transpose(0, 1), w)
        fm = 0.5 * (total.pow(2).sum(2) - squares)
        for weight, bias in self.mlp[1:]:
            h = torch.baddbmm(bias.unsqueeze(1), torch.relu(h), weight)
        return (first + fm + h.squeeze(-1).T).expand(n, -1).mean(1)


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
