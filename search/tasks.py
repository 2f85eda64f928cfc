"""Celery tasks of the search app."""

from __future__ import annotations

from celery import shared_task

from search import services


@shared_task(name="search.train_ranker", time_limit=3600)
def train_ranker(max_queries: int = 3000) -> str:
    """Fit the learned ranker of the active backbone version on judged queries and clicks."""
    return str(services.train_ranker(max_queries=max_queries))
