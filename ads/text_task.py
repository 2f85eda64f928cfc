"""The ads task of the shared backbone's multi-task fine-tune: click prediction from (creative, context) texts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn


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
