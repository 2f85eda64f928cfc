"""Settings come from the environment through strict helpers, and every variable is documented."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
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
        ROOT / "config" / "gunicorn.conf.py",
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


def production_environment() -> dict[str, str]:
    """The ``# production: NAME=value`` lines of platform/.env.example."""
    text = (ROOT / "platform" / ".env.example").read_text()
    return dict(re.findall(r"^# production: ([A-Z_]+)=(.*)$", text, re.MULTILINE))


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True
    )


def test_check_deploy_is_clean_with_the_documented_production_environment(tmp_path):
    production = production_environment()
    assert {"SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE"} <= set(production)
    result = manage("check", "--deploy", "--fail-level", "WARNING", STATE_DIR=str(tmp_path), **production)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0  # made, readable by its owner only


def test_check_deploy_warns_without_it(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", STATE_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "security.W008" in result.stderr + result.stdout


def test_a_development_key_is_refused_when_debug_is_false(tmp_path):
    refused = manage("check", STATE_DIR=str(tmp_path), SECRET_KEY="dev-only-insecure-key-change-me")
    assert refused.returncode != 0 and "SECRET_KEY is a development or short key" in refused.stderr
    accepted = manage("check", STATE_DIR=str(tmp_path), SECRET_KEY="dev-only-key", DEBUG="true")
    assert accepted.returncode == 0, accepted.stderr
    assert manage("check", STATE_DIR=str(tmp_path), SECRET_KEY=secrets.token_urlsafe(50)).returncode == 0
