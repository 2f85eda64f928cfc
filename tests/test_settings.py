"""Settings come from the environment through strict helpers, and every variable is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.env import env_bool, env_int

ROOT = Path(__file__).resolve().parent.parent


def test_env_bool_accepts_only_true_or_false(monkeypatch):
    monkeypatch.setenv("FLAG", "TRUE")
    assert env_bool("FLAG") is True
    monkeypatch.setenv("FLAG", "yes")
    with pytest.raises(ValueError, match="FLAG must be 'true' or 'false'"):
        env_bool("FLAG")


def test_env_int_names_the_variable_on_bad_input(monkeypatch):
    monkeypatch.setenv("SIZE", "big")
    with pytest.raises(ValueError, match="SIZE must be an integer"):
        env_int("SIZE", 3)


def test_every_variable_read_is_listed_in_env_example():
    sources = [
        ROOT / "config" / "settings.py",
        *sorted((ROOT / "platform").glob("*.sh")),
        ROOT / "tests" / "test_worker.py",
        ROOT / "catalog/management/commands/bootstrap_platform.py",
    ]
    read = set()
    for path in sources:
        text = path.read_text()
        read |= set(re.findall(r'env_(?:str|bool|int|list)\("([A-Z_]+)"', text))
        read |= set(re.findall(r'environ\.get\("([A-Z_]+)"', text))
        read |= set(re.findall(r"\$\{([A-Z_]+):-", text))
    listed = set(re.findall(r"^([A-Z_]+)=", (ROOT / "platform" / ".env.example").read_text(), re.MULTILINE))
    assert read, "the patterns found no variables"
    assert read - listed == set()


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("backbone.run_training_job", "training"),
        ("backbone.embed_version", "bulk"),
        ("catalog.embed_products", "default"),
        ("chatbot.refresh_prototypes", "default"),
    ],
)
def test_each_task_goes_to_its_queue(task, queue):
    from config.celery import app

    assert app.amqp.router.route({}, task)["queue"].name == queue


def test_every_requirement_has_an_upper_bound():
    """A fresh install resolves what the tests ran with: each requirement is pinned or bounded above."""
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert "==" in line or "<" in line, f"{name}: {line} has no upper bound"
