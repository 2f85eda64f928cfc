"""The serving encoder: an ONNX Runtime copy of a backbone encoder, for latency-bound encodes on the CPU.

Exported from the PyTorch :class:`backbone.encoder.Encoder` (transformer, mean pooling and L2 norm in
one graph; the same tokenizer and ``max_length``), so it gives the same vectors (cosine 1.0000 to
the PyTorch encoder's, padded batches included). One short query encodes 2.6-2.9x faster on one
core than in PyTorch (bench/reports/serving-encoder.md): what search, chat and ad selection wait
for in each request. Training and bulk embedding keep the PyTorch encoder.

Pure PyTorch/ONNX Runtime, no Django: :func:`backbone.services.serving_encoder` decides where the
file of a version lives and loads it once per process.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from backbone.encoder import Encoder

OPSET = 17
# Traced with a padded batch, so that the graph keeps the attention mask's path.
EXPORT_EXAMPLE = ["a", "a longer example text, so that the first one is padded"]


class _Pooled(nn.Module):
    """The transformer with the encoder's mean pooling and L2 norm, as one traceable module."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder({"input_ids": input_ids, "attention_mask": attention_mask})


def export(encoder: Encoder, path: Path) -> None:
    """Write ``encoder`` as an ONNX graph at ``path`` (atomically: a concurrent reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    features = encoder.tokenize(EXPORT_EXAMPLE)
    if encoder.device.type != "cpu":
        raise ValueError("export a CPU encoder: the serving encoder runs on the CPU")
    was_training = encoder.training
    module = _Pooled(encoder).eval()
    fd, partial = tempfile.mkstemp(prefix=path.name, suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python booleans: the padded example covers them
            torch.onnx.export(
                module,
                (features["input_ids"], features["attention_mask"]),
                partial,
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                              "embedding": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )  # fmt: skip
        os.replace(partial, path)
    finally:
        encoder.train(was_training)
        if os.path.exists(partial):
            os.unlink(partial)


class OnnxEncoder:
    """An exported encoder under ONNX Runtime, with :class:`Encoder`'s ``encode`` (inference only)."""

    device = torch.device("cpu")

    def __init__(self, path: Path, tokenizer, *, max_length: int, threads: int = 1):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.path = path
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    @classmethod
    def from_encoder(cls, encoder: Encoder, path: Path, *, threads: int = 1) -> OnnxEncoder:
        """Export ``encoder`` to ``path`` (unless it is there) and load it."""
        if not path.exists():
            export(encoder, path)
        return cls(path, encoder.tokenizer, max_length=encoder.max_length, threads=threads)

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        inputs = {name: batch[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
        return self.session.run(None, inputs)[0]

    def encode(
        self, texts: Sequence[str], batch_size: int = 32, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed ``texts`` into an (n, dim) float32 array of unit vectors (batches of similar length)."""
        result = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            result[idx] = self._run([texts[i] or " " for i in idx])
            if progress:
                progress(len(idx))
        return result
