"""The multi-task trainer on a tiny random transformer with synthetic tasks of known answer."""

from __future__ import annotations

import random

import pytest

from backbone.encoder import Encoder
from backbone.multitask import (
    MultiTaskTrainer,
    TrainingCancelled,
    TrainingConfig,
    capped,
    encoder_param_groups,
    interleave,
)
from chatbot.ml import IntentTask

COLOURS = ["red", "green", "blue", "yellow"]


def colour_task(name: str, seed: int) -> IntentTask:
    """Texts that name a colour among noise words; the label is the colour."""
    rng = random.Random(seed)
    noise = ["table", "chair", "lamp", "door", "window", "floor", "paint", "brush", "wall", "shelf"]
    texts, labels = [], []
    for i in range(160):
        colour = COLOURS[i % 4]
        words = rng.sample(noise, 3) + [colour]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(colour)
    task = IntentTask((texts, labels), seed=seed, lexical_weight=0.0)  # the encoder must learn it, not TF-IDF
    task.name = name
    return task


def test_interleave_scales_batches_by_weight():
    rng = random.Random(0)
    schedule = interleave({"a": [1, 2, 3, 4], "b": [5, 6]}, {"a": 1.0, "b": 2.0}, rng)
    names = [name for name, _ in schedule]
    assert names.count("a") == 4 and names.count("b") == 4


def test_a_task_with_max_steps_keeps_only_its_first_batches_over_all_epochs(tiny_model_dir):
    schedule = [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]
    assert capped(schedule, {"a": 2, "b": None}) == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("b", 3)]
    big, small = colour_task("big", 1), colour_task("small", 2)
    big.max_steps = 5
    trainer = MultiTaskTrainer(Encoder.load(tiny_model_dir, device="cpu"), [big, small], TrainingConfig(epochs=3))
    names = [name for name, _ in trainer._schedule(random.Random(0))]
    per_epoch = len(small.batches(random.Random(0), 32))
    assert names.count("big") == 5 and names.count("small") == 3 * per_epoch


def test_layer_decay_gives_lower_layers_smaller_rates(tiny_model_dir):
    encoder = Encoder.load(tiny_model_dir, device="cpu")
    params = [p for p in encoder.parameters() if p.requires_grad]
    assert encoder_param_groups(encoder, 1e-4) == [{"params": params, "lr": 1e-4}]
    groups = encoder_param_groups(encoder, 1e-4, layer_decay=0.5)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert sorted(rate) == sorted(id(p) for p in params), "every parameter in exactly one group"
    named = dict(encoder.named_parameters())
    layers = sorted({int(n.split(".layer.")[1].split(".")[0]) for n in named if ".layer." in n})
    top, bottom = layers[-1], layers[0]
    by_name = {n: rate[id(p)] for n, p in named.items()}
    top_rate = next(r for n, r in by_name.items() if f".layer.{top}." in n)
    bottom_rate = next(r for n, r in by_name.items() if f".layer.{bottom}." in n)
    embedding_rate = next(r for n, r in by_name.items() if "embeddings" in n)
    assert top_rate == pytest.approx(1e-4)
    assert bottom_rate == pytest.approx(1e-4 * 0.5 ** (top - bottom))
    assert embedding_rate == pytest.approx(bottom_rate * 0.5)


def test_two_tasks_fine_tune_one_shared_encoder(tiny_model_dir):
    encoder = Encoder.load(tiny_model_dir, device="cpu")
    before = {k: v.clone() for k, v in encoder.state_dict().items() if "encoder.layer.0" in k}
    tasks = [colour_task("colours_a", 1), colour_task("colours_b", 2)]
    chance_heads = {t.name: t.build_head(encoder.dim) for t in tasks}
    untrained = {t.name: t.evaluate(encoder, chance_heads[t.name].eval())["top_label_accuracy"] for t in tasks}
    seen = []
    result = MultiTaskTrainer(
        encoder,
        tasks,
        TrainingConfig(epochs=4, batch_size=16, lr=1e-4, head_lr=1e-2, baselines=True),
        progress=lambda fraction, message: seen.append(fraction),
    ).fit()
    after = encoder.state_dict()
    assert any((after[k] != v).any() for k, v in before.items()), "the shared encoder was updated"
    for task in tasks:
        # the top label, whether or not the out-of-scope threshold would answer it
        assert result.metrics[task.name]["top_label_accuracy"] >= 0.9 > untrained[task.name] + 0.3
        assert "frozen_encoder_logreg" in result.baselines[task.name]
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_cancelled_training_stops(tiny_model_dir):
    encoder = Encoder.load(tiny_model_dir, device="cpu")
    trainer = MultiTaskTrainer(encoder, [colour_task("c", 1)], TrainingConfig(epochs=1), should_stop=lambda: True)
    with pytest.raises(TrainingCancelled):
        trainer.fit()


def test_task_names_must_be_unique(tiny_model_dir):
    encoder = Encoder.load(tiny_model_dir, device="cpu")
    with pytest.raises(ValueError, match="unique"):
        MultiTaskTrainer(encoder, [colour_task("same", 1), colour_task("same", 2)])


def test_a_saved_head_loads_back_with_its_config(tmp_path):
    import torch

    from backbone.multitask import load_head_state, save_head
    from chatbot.ml import IntentHead

    head = IntentHead(384, 3)
    save_head(tmp_path / "intents", head, {"labels": ["a", "b", "c"]})
    state, config = load_head_state(tmp_path / "intents")
    again = IntentHead(384, 3)
    again.load_state_dict(state)
    assert config == {"labels": ["a", "b", "c"]}
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in head.state_dict().items())


def test_frozen_word_embeddings_stay_while_the_layers_learn(tiny_model_dir):
    encoder = Encoder.load(tiny_model_dir, device="cpu")
    named = dict(encoder.named_parameters())
    word = next(n for n in named if "word_embeddings" in n)
    layer = next(n for n in named if "encoder.layer.0" in n and n.endswith("weight"))
    before = {n: named[n].detach().clone() for n in (word, layer)}
    config = TrainingConfig(epochs=1, batch_size=16, lr=1e-3, freeze_word_embeddings=True)
    MultiTaskTrainer(encoder, [colour_task("c", 1)], config).fit()
    assert (named[word] == before[word]).all()
    assert (named[layer] != before[layer]).any()
    assert named[word].requires_grad, "frozen only while training"
