"""The learned ranker: trained by the ``search`` app trainer, a lifecycle row, served only with its backbone."""

from __future__ import annotations

from pathlib import Path

import pytest

from backbone import lifecycle, registry
from backbone.models import ModelVersion
from backbone.services import ensure_base_version, reset_caches
from catalog.services import embed_products
from search import evaluation, ml, services, training
from search.models import SearchRanker
from tests.factories import ProductFactory
from tests.search.conftest import JUDGED, TITLES, add_judged_queries

pytestmark = pytest.mark.django_db


def fit(version, **parameters) -> SearchRanker:
    """Train a small ranker for ``version`` on every judged query, without typo'd copies (a known count)."""
    defaults = {
        "search_ranker_rounds": 30,
        "search_ranker_typo_fraction": 0.0,
        "search_ranker_share": 1.0,
        "search_ranker_min_gain": -1.0,  # served whatever its held-out NDCG
    }
    return training.fit_ranker(version=version, parameters={**defaults, **parameters})


def test_search_registers_what_train_search_trains(judged):
    trainer = registry.APP_TRAINERS["search"]
    assert (trainer.tasks, trainer.fine_tunes, trainer.fit) == (("search",), True, training.fit_ranker)
    assert trainer.data() == "18 judged queries (36 labels), 0 search clicks"


def test_without_labels_or_clicks_search_has_nothing_to_train(catalogue):
    assert registry.APP_TRAINERS["search"].data() == ""


def test_fitted_ranker_is_a_ready_row_that_serves_once_activated(judged, tiny_active_version, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    row = fit(tiny_active_version)
    assert (row.state, row.backbone_version, row.metrics["queries"]) == ("ready", tiny_active_version, 18)
    assert Path(row.path).parent == tmp_path / training.RANKER_DIRNAME
    assert ml.Ranker.load(Path(row.path)).config["backbone_version"] == "tiny"
    assert services.search_products(query="hammer").ranker == "fusion"  # ready is not serving

    lifecycle.activate(SearchRanker, pk=row.pk)

    assert services.search_products(query="hammer").ranker == "learned"
    again = fit(tiny_active_version)  # a second training is a new row in a new folder
    assert again.pk != row.pk and again.path != row.path and Path(row.path).is_dir()


def test_ranker_that_does_not_beat_the_fusion_on_held_out_queries_is_not_returned(
    judged, tiny_active_version, settings, tmp_path
):
    settings.MODELS_DIR = tmp_path
    assert training.fit_ranker(version=tiny_active_version, parameters={"search_ranker_min_gain": 1.0}) is None
    row = SearchRanker.objects.get()
    assert row.state == "ready" and Path(row.path, "ranker.txt").is_file()
    held_out = row.metrics["held_out"]
    assert held_out["queries"] >= 1 and 0.0 <= held_out["ndcg@10"] <= 1.0 and 0.0 <= held_out["fusion_ndcg@10"] <= 1.0
    assert "untrained fusion" in row.log


def test_ranker_of_another_backbone_version_is_not_served(judged, tiny_active_version, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    lifecycle.activate(SearchRanker, pk=fit(tiny_active_version).pk)
    newer = ModelVersion.objects.create(name="tiny-2", path=tiny_active_version.path, state=ModelVersion.State.READY)
    lifecycle.activate(ModelVersion, pk=newer.pk)
    reset_caches()

    result = services.search_products(query="hammer")

    assert result.ranker == "fusion"
    assert SearchRanker.objects.get(state="active").backbone_version == tiny_active_version


def test_rolling_back_the_ranker_serves_the_previous_one_at_once(judged, tiny_active_version, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    first = fit(tiny_active_version)
    second = fit(tiny_active_version, search_ranker_queries=12)
    lifecycle.activate(SearchRanker, pk=first.pk)
    lifecycle.activate(SearchRanker, pk=second.pk)
    assert services.serving_ranker(tiny_active_version).config["queries"] == 12

    assert lifecycle.roll_back(SearchRanker).pk == first.pk

    assert services.serving_ranker(tiny_active_version).config["queries"] == 18
    assert services.search_products(query="drill").ranker == "learned"


def test_failed_training_is_a_failed_row_with_the_error(catalogue, tiny_active_version, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    with pytest.raises(ValueError, match="at least 10 judged or clicked queries"):
        fit(tiny_active_version)
    row = SearchRanker.objects.get()
    assert row.state == "failed" and "at least 10 judged or clicked queries" in row.error


def test_backbone_and_ranker_learn_from_disjoint_query_texts():
    texts = [f"query number {i}" for i in range(400)]
    backbone, ranker = training.split_queries(texts, 0.45)
    assert not set(backbone) & set(ranker) and len(backbone) + len(ranker) == 400
    assert 0.35 < len(ranker) / 400 < 0.55
    assert training.split_queries(texts[:15], 0.45) == (texts[:15], texts[:15])  # too few to split


def test_search_task_is_built_from_the_backbone_side_of_labels_and_clicks():
    from search.models import JudgedQuery, RelevanceLabel, SearchClick, SearchQueryLog

    products = ProductFactory.create_batch(4)
    for i in range(40):
        query = JudgedQuery.objects.create(external_id=f"q{i}", text=f"query {i}")
        RelevanceLabel.objects.create(query=query, product=products[i % 4], relevance=3.0)
        RelevanceLabel.objects.create(query=query, product=products[(i + 1) % 4], relevance=1.0)
    clicked = SearchQueryLog.objects.create(text="clicked query 3", normalized="clicked query 3")
    SearchClick.objects.create(query=clicked, product=products[0], position=1)
    texts = [f"query {i}" for i in range(40)] + ["clicked query 3"]
    backbone, ranker = training.split_queries(sorted(texts), training.DEFAULTS["search_ranker_share"])

    task = registry.TASK_FACTORIES["search"]({"seed": 1})

    assert task.name == "search"
    trained = {pair.query for pair in task.pairs} | {query for query, _ in task.validation}
    assert trained == set(backbone) and not trained & set(ranker)
    assert "clicked query 3" in backbone  # a click is a positive (relevance 3) of its query's text
    assert all(pair.negatives for pair in task.pairs if pair.query != "clicked query 3")


def test_a_process_reads_the_active_ranker_row_once_per_interval_and_other_processes_switches_after_it(
    judged, tiny_active_version, settings, tmp_path, monkeypatch
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.MODELS_DIR = tmp_path
    row = fit(tiny_active_version)
    lifecycle.activate(SearchRanker, pk=row.pk)  # this process: seen at once
    assert services.search_products(query="drill").ranker == "learned"
    with CaptureQueriesContext(connection) as queries:
        services.search_products(query="hammer")
    assert not [q for q in queries.captured_queries if "search_searchranker" in q["sql"]]

    SearchRanker.objects.filter(pk=row.pk).update(state="retired")  # as another process's roll-back would
    assert services.search_products(query="drill").ranker == "learned"  # within the interval
    monkeypatch.setattr(services.ACTIVE_RANKER, "seconds", 0.0)
    assert services.search_products(query="drill").ranker == "fusion"


@pytest.fixture
def packaged_catalogue(db, settings, tmp_path):
    """The conftest catalogue embedded with the real packaged encoder (the base version, active)."""
    settings.MODELS_DIR = tmp_path
    ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE).update(state=ModelVersion.State.RETIRED)
    reset_caches()
    version = ensure_base_version()
    products = [
        ProductFactory(title=title, brand=brand, category_path=category, price=price)
        for title, brand, category, price in TITLES
    ]
    embed_products(product_ids=[p.pk for p in products])
    add_judged_queries(products)
    yield version
    reset_caches()


@pytest.mark.slow
def test_evaluation_ranks_exactly_as_the_api_serves(packaged_catalogue, storefront_client):
    queries = ["drill", "garden hoze", "claw hammer", "stainless screws", "light for the ceiling"]

    def api(query: str) -> tuple[str, list[str]]:
        body = storefront_client.get("/api/v1/search", {"q": query, "page_size": 10}).json()
        return body["ranker"], [hit["sku"] for hit in body["results"]]

    assert [api(q) for q in queries] == [("fusion", evaluation.served_ranking(q)[:10]) for q in queries]
    row = fit(packaged_catalogue)
    lifecycle.activate(SearchRanker, pk=row.pk)

    served = [api(q) for q in queries]

    assert served == [("learned", evaluation.served_ranking(q)[:10]) for q in queries]
    assert all(len(skus) > 1 for _, skus in served)


@pytest.fixture
def many_judged(catalogue):
    """300 judged queries (enough for a ranker side and its held-out validation queries)."""
    from search.models import JudgedQuery, RelevanceLabel

    by_title = {p.title: p for p in catalogue}
    for i in range(300):
        query, title = JUDGED[i % len(JUDGED)]
        judged = JudgedQuery.objects.create(external_id=f"m{i}", text=f"{query} model {i}", dataset="test")
        RelevanceLabel.objects.create(query=judged, product=by_title[title], relevance=3.0)
    return catalogue


def test_the_gate_scores_search_as_the_api_serves_it_on_the_held_out_queries(
    many_judged, tiny_active_version, settings, tmp_path
):
    """The search validator's NDCG@10 is that of the API's own rankings of the held-out queries."""
    settings.MODELS_DIR = tmp_path
    judged = training.judged_queries()
    _, ranker_side = training.split_queries(sorted(judged), training.DEFAULTS["search_ranker_share"])
    held_out = [t for t in ranker_side if training.is_validation_query(t)]
    assert 10 <= len(held_out) < len(ranker_side) / 4
    skus = {p.pk: p.sku for p in many_judged}
    served = evaluation.score_rankings(
        [evaluation.served_ranking(t) for t in held_out], [{skus[p]: r for p, r in judged[t].items()} for t in held_out]
    )

    metric, value, n = training.validate_version(version=tiny_active_version)

    assert (metric, n) == ("ndcg@10", len(held_out)) and value == pytest.approx(served["ndcg@10"], abs=1e-4)


def test_the_ranker_trains_on_none_of_the_held_out_queries_and_reports_its_score_on_them(
    many_judged, tiny_active_version, settings, tmp_path
):
    settings.MODELS_DIR = tmp_path
    row = training.fit_ranker(
        version=tiny_active_version, parameters={"search_ranker_rounds": 20, "search_ranker_min_gain": -1.0}
    )
    examples, _, _ = training.ranker_examples({})
    held_out = [t for t, _ in training.validation_examples(training.judged_queries())]
    assert not {t for t, _ in examples} & set(held_out)
    assert row.metrics["held_out"]["queries"] == len(held_out) > 0
    lifecycle.activate(SearchRanker, pk=row.pk)
    metric, value, n = training.validate_version(version=tiny_active_version)  # the active ranker of this version
    assert n >= len(held_out) and value == pytest.approx(
        training.validate_version(version=tiny_active_version, row=row)[1]
    )
