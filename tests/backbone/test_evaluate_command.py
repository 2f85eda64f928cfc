"""``manage.py evaluate``: options reach the evaluator, and its writes are rolled back."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backbone import registry
from catalog.models import Product


@pytest.fixture
def echo_evaluator():
    """An evaluator that writes a product and echoes its options."""

    def run(*, dataset, train_dir, test_dir, options):
        Product.objects.create(sku="written-by-evaluator", title="x")
        return {"n": 1, "metrics": {"options": options}, "baselines": {}}

    registry.register_evaluator("echo", ("anything",), run)
    yield
    registry.EVALUATORS.pop("echo", None)


def run_evaluate(tmp_path, *extra: str) -> dict:
    stdout = io.StringIO()
    call_command(
        "evaluate", "echo", "--dataset", "anything", "--train-dir", str(tmp_path), "--test-dir", str(tmp_path),
        *extra, stdout=stdout,
    )  # fmt: skip
    return json.loads(stdout.getvalue())


@pytest.mark.django_db
def test_set_options_reach_the_evaluator_parsed_as_json_when_they_can_be(tmp_path, echo_evaluator):
    report = run_evaluate(tmp_path, "--set", "epochs=2", "--set", "name=fast run", "--set", "blend=[0.5, 1]")
    options = report["metrics"]["options"]
    assert options["epochs"] == 2
    assert options["name"] == "fast run"
    assert options["blend"] == [0.5, 1]
    assert options["seed"] == 7


@pytest.mark.django_db
def test_evaluator_writes_are_rolled_back(tmp_path, echo_evaluator):
    run_evaluate(tmp_path)
    assert not Product.objects.filter(sku="written-by-evaluator").exists()


@pytest.mark.django_db
def test_set_without_equals_sign_is_a_command_error(tmp_path, echo_evaluator):
    with pytest.raises(CommandError, match="--set expects KEY=VALUE"):
        run_evaluate(tmp_path, "--set", "epochs")
