"""Multi-task fine-tuning: one backbone, one head per registered task, one training loop.

Each app contributes a :class:`TrainingTask` (its data, head and loss); the trainer
interleaves their batches so that every task moves the same shared encoder. Pure
PyTorch, no Django.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from backbone.encoder import Encoder

logger = logging.getLogger(__name__)


class TrainingCancelled(Exception):
    """Raised inside the loop when ``should_stop`` says the job was cancelled."""


@runtime_checkable
class TrainingTask(Protocol):
    """What an app contributes to a multi-task fine-tune.

    A task may also set ``max_steps`` (an int, or None for no cap): the most batches of it that a
    whole fine-tune runs, whatever the number of epochs, so that a large task (thousands of judged
    queries) keeps a bounded share of the time when another task asks for many epochs.
    """

    name: str
    weight: float

    def build_head(self, dim: int) -> nn.Module:
        """Return a fresh head that maps encoder embeddings to the task's outputs."""

    def batches(self, rng: random.Random, batch_size: int) -> list[Any]:
        """Return one epoch of training batches, shuffled with ``rng``."""

    def loss(self, encoder: Encoder, head: nn.Module, batch: Any) -> torch.Tensor:
        """Return the scalar loss of one batch (with the graph through encoder and head)."""

    def evaluate(self, encoder: Encoder, head: nn.Module) -> dict[str, float]:
        """Return metrics of encoder + head on the task's own validation split."""

    def baselines(self, encoder: Encoder) -> dict[str, dict[str, float]]:
        """Return baseline metrics on the same validation split, from the un-tuned encoder."""

    def head_config(self) -> dict[str, Any]:
        """Return what is needed to rebuild and use the head (labels, sizes), JSON-serialisable."""


@dataclass
class TrainingConfig:
    """Hyper-parameters of one multi-task fine-tune."""

    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 5e-5
    head_lr: float = 2e-3
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    seed: int = 13
    max_grad_norm: float = 1.0
    layer_decay: float = 1.0  # layer-wise LR decay: layer i of L gets lr x decay^(L - i); embeddings decay^(L + 1)
    # keep the token embedding matrix (half of MiniLM's weights) as it is: AdamW then skips it,
    # which makes a step about a fifth faster on CPU
    freeze_word_embeddings: bool = False
    # baselines cost a pass over every validation split before the first step: evaluations ask for them,
    # training jobs do not
    baselines: bool = False


@dataclass
class TrainingResult:
    """Metrics after training, per task, plus the heads themselves."""

    metrics: dict[str, dict[str, float]]
    baselines: dict[str, dict[str, dict[str, float]]]
    heads: dict[str, nn.Module]
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def interleave(per_task: dict[str, list[Any]], weights: dict[str, float], rng: random.Random) -> list[tuple[str, Any]]:
    """Mix the tasks' batches into one schedule; a task's weight scales how many of its batches run."""
    schedule: list[tuple[str, Any]] = []
    for name, batches in per_task.items():
        count = max(1, round(len(batches) * weights[name])) if batches else 0
        schedule.extend((name, batches[i % len(batches)]) for i in range(count))
    rng.shuffle(schedule)
    return schedule


def capped(schedule: list[tuple[str, Any]], max_steps: dict[str, int | None]) -> list[tuple[str, Any]]:
    """Keep at most ``max_steps[name]`` batches of each task (the first ones), in schedule order."""
    seen: dict[str, int] = {}
    kept = []
    for name, batch in schedule:
        seen[name] = seen.get(name, 0) + 1
        if max_steps.get(name) is None or seen[name] <= max_steps[name]:
            kept.append((name, batch))
    return kept


class MultiTaskTrainer:
    """Fine-tune ``encoder`` together with one head per task."""

    def __init__(
        self,
        encoder: Encoder,
        tasks: Sequence[TrainingTask],
        config: TrainingConfig | None = None,
        progress: Callable[[float, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        if not tasks:
            raise ValueError("at least one training task is needed")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique: {names}")
        self.encoder = encoder
        self.tasks = {t.name: t for t in tasks}
        self.config = config or TrainingConfig()
        self.progress = progress or (lambda fraction, message: None)
        self.should_stop = should_stop or (lambda: False)

    def _schedule(self, rng: random.Random) -> list[tuple[str, Any]]:
        cfg = self.config
        full_epochs = int(cfg.epochs)
        schedule: list[tuple[str, Any]] = []
        weights = {name: task.weight for name, task in self.tasks.items()}
        for _ in range(max(1, full_epochs + (1 if cfg.epochs > full_epochs else 0))):
            per_task = {name: task.batches(rng, cfg.batch_size) for name, task in self.tasks.items()}
            schedule.extend(interleave(per_task, weights, rng))
        total = int(round(len(schedule) / max(1, full_epochs + (cfg.epochs > full_epochs)) * cfg.epochs))
        return capped(schedule[: max(1, total)], {n: getattr(t, "max_steps", None) for n, t in self.tasks.items()})

    def _optimizer(self, params: list[dict[str, Any]], steps: int):
        """AdamW over ``params`` with linear warm-up then linear decay to 0 over ``steps``."""
        cfg = self.config
        optimizer = torch.optim.AdamW(params, weight_decay=cfg.weight_decay)
        warmup = max(1, int(steps * cfg.warmup_fraction))

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (steps - step) / max(1, steps - warmup))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)

    def _train(self, schedule: list[tuple[str, Any]], heads: dict[str, nn.Module]) -> list[dict[str, float]]:
        """Run the schedule's steps on the encoder and ``heads``; return the loss history."""
        cfg = self.config
        params = [
            *encoder_param_groups(self.encoder, cfg.lr, cfg.layer_decay),
            {"params": [p for h in heads.values() for p in h.parameters()], "lr": cfg.head_lr},
        ]
        optimizer, scheduler = self._optimizer(params, len(schedule))
        self.encoder.train()
        for head in heads.values():
            head.train()
        history: list[dict[str, float]] = []
        running: dict[str, float] = {}
        report_every, reported = max(1, len(schedule) // 50), time.monotonic()
        for step, (name, batch) in enumerate(schedule):
            if self.should_stop():
                raise TrainingCancelled(f"cancelled at step {step} of {len(schedule)}")
            loss = self.tasks[name].loss(self.encoder, heads[name], batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_([p for g in params for p in g["params"]], cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            value = float(loss.detach())
            running[name] = 0.9 * running.get(name, value) + 0.1 * value
            milestone = (step + 1) % report_every == 0 or step + 1 == len(schedule)
            if milestone:
                history.append({"step": step + 1, **{f"loss_{k}": round(v, 4) for k, v in running.items()}})
            if milestone or time.monotonic() - reported > 30:
                reported = time.monotonic()  # at least every 30 s, so a slow machine still shows progress
                losses = ", ".join(f"{k} loss {v:.3f}" for k, v in running.items())
                self.progress(0.05 + 0.9 * (step + 1) / len(schedule), f"step {step + 1}/{len(schedule)}: {losses}")
        return history

    def fit(self) -> TrainingResult:
        """Run the fine-tune; return per-task metrics before/after and the trained heads."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        rng = random.Random(cfg.seed)
        started = time.monotonic()
        device = self.encoder.device

        baselines = {}
        if cfg.baselines:
            self.progress(0.0, "measuring baselines")
            baselines = {name: task.baselines(self.encoder) for name, task in self.tasks.items()}
        heads = {name: task.build_head(self.encoder.dim).to(device) for name, task in self.tasks.items()}

        schedule = self._schedule(rng)
        frozen = [
            p for n, p in self.encoder.named_parameters() if cfg.freeze_word_embeddings and "word_embeddings" in n
        ]
        for param in frozen:
            param.requires_grad_(False)
        history = self._train(schedule, heads)
        for param in frozen:
            param.requires_grad_(True)
        self.encoder.eval()
        metrics: dict[str, dict[str, float]] = {}
        for name, task in self.tasks.items():
            heads[name].eval()
            metrics[name] = task.evaluate(self.encoder, heads[name])
        self.progress(1.0, "evaluated: " + json.dumps(metrics))
        return TrainingResult(
            metrics=metrics,
            baselines=baselines,
            heads=heads,
            steps=len(schedule),
            seconds=round(time.monotonic() - started, 1),
            history=history,
        )


LAYER_NAME = re.compile(r"\.layers?\.(\d+)\.")


def encoder_param_groups(encoder: nn.Module, lr: float, layer_decay: float = 1.0) -> list[dict[str, Any]]:
    """Optimizer groups for the encoder: one group at ``lr``, or with ``layer_decay`` < 1 one group
    per transformer layer with the rate shrinking towards the input (top layer ``lr``, the one below
    ``lr x decay``, ..., the embeddings lowest); parameters outside layers (pooler) keep ``lr``."""
    named = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]
    if layer_decay >= 1.0:
        return [{"params": [p for _, p in named], "lr": lr}]
    depth = {n: int(m.group(1)) for n, _ in named if (m := LAYER_NAME.search(n))}
    top = max(depth.values(), default=-1) + 1
    groups: dict[float, list[nn.Parameter]] = {}
    for name, param in named:
        if name in depth:
            scale = layer_decay ** (top - depth[name] - 1)
        elif "embeddings" in name:
            scale = layer_decay**top
        else:
            scale = 1.0
        groups.setdefault(lr * scale, []).append(param)
    return [{"params": ps, "lr": group_lr} for group_lr, ps in sorted(groups.items())]


def save_head(folder: Path, head: nn.Module, config: dict[str, Any]) -> None:
    """Write a head as ``weights.safetensors`` + ``config.json`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, folder / "weights.safetensors")
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def load_head_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a head written by :func:`save_head`: its state dict and config."""
    return load_file(folder / "weights.safetensors"), json.loads((folder / "config.json").read_text())
