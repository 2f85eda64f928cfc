"""Fixtures of the backbone tests: intents a tiny model can learn, and apps of a registry of our own."""

from __future__ import annotations

import pytest

from backbone import registry
from catalog.models import ProductEmbedding
from chatbot.models import Intent, IntentExample


@pytest.fixture
def colour_intents(db):
    """Forty examples each of four intents that a tiny model can learn."""
    for colour in ["red", "green", "blue", "yellow"]:
        intent = Intent.objects.create(name=f"paint_{colour}", dataset="synthetic")
        IntentExample.objects.bulk_create(
            IntentExample(intent=intent, text=f"{noun} in {colour} {adj}")
            for noun in ["paint", "a wall", "the door", "my shed", "chairs", "a fence", "tiles", "the roof"]
            for adj in ["please", "now", "matte", "gloss", "today"]
        )


@pytest.fixture
def apps(monkeypatch):
    """Two apps of our own registry: ``colours`` fine-tunes the backbone on the intents; ``empty`` has no data.

    ``fitted`` records the backbone version each app's fit saw; ``fail`` makes ``colours``'s fit raise.
    """
    state = {"fitted": [], "fail": False}

    def fit(*, version, parameters, job_id, progress):
        progress(0.5, "fitting colours")
        state["fitted"].append((version.pk, version.state, ProductEmbedding.objects.filter(version=version).count()))
        if state["fail"]:
            raise ValueError("the colour model did not converge")

    def data() -> str:
        return f"{Intent.objects.count()} intents" if Intent.objects.exists() else ""

    trainers = {
        "colours": registry.AppTrainer("colours", ("intents",), True, data, fit),
        "empty": registry.AppTrainer("empty", (), False, lambda: "", None),
    }
    monkeypatch.setattr(registry, "APP_TRAINERS", trainers)
    return state


@pytest.fixture
def models_dir(tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR
