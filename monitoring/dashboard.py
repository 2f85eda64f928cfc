"""What the admin's monitoring dashboards show: charts of the online metrics, calibration plots, the
backbone's training loss and the trained models of each app, as plain data for the template.

A page reads only the aggregate table (``MetricValue``), the model rows and the small
``training.json`` of at most two backbone versions: nothing here is proportional to the raw logs.
Charts are dicts that ``static/monitoring/dashboard.js`` draws with Chart.js: ``kind`` "time" (one
value per bucket of ``labels``, ``None`` where there is no row) or "xy" (points ``{"x", "y"}``).
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db.models import F, Sum

from ads.models import CtrModelVersion
from backbone import lifecycle
from backbone.models import ModelVersion, TrainedModel
from monitoring import metrics
from monitoring.models import MetricValue
from monitoring.services import SPAN, bucket_start
from recommend.models import RecommenderModel
from search.models import SearchRanker

logger = logging.getLogger(__name__)
MAX_DIMENSIONS = 6  # lines per dimensioned metric: the values with the most observations
MAX_MODELS = 20  # rows per models table, newest first


@dataclass(frozen=True)
class Span:
    """A range a page shows: the last ``buckets`` hours or days, ending with the current one."""

    label: str
    granularity: str
    buckets: int

    def starts(self, now: datetime) -> list[datetime]:
        """The bucket starts of the range, oldest first."""
        step, last = SPAN[self.granularity], bucket_start(now, self.granularity)
        return [last - step * i for i in range(self.buckets - 1, -1, -1)]


RANGES = {
    "48h": Span("Last 48 hours", MetricValue.Granularity.HOUR, 48),
    "30d": Span("Last 30 days", MetricValue.Granularity.DAY, 30),
}
DEFAULT_RANGE = "48h"
Column = tuple[str, tuple[str, ...]]  # a heading and the path of keys to its value in a row's metrics JSON


@dataclass(frozen=True)
class AppPage:
    """What an app's page shows besides its metrics: its trained models (``model``; None when they live
    in the backbone), the backbone task it trains (loss curve, validation columns) and a calibration metric."""

    title: str
    model: type[TrainedModel] | None
    columns: tuple[Column, ...] = ()
    task: str = ""
    task_columns: tuple[Column, ...] = ()
    calibration: str = ""


APPS = {
    "search": AppPage(
        title="Search",
        model=SearchRanker,
        columns=(("held-out NDCG@10", ("held_out", "ndcg@10")), ("fusion NDCG@10", ("held_out", "fusion_ndcg@10")),
                 ("queries", ("queries",))),
        task="search",
        task_columns=(("judged NDCG@10", ("judged_ndcg@10",)), ("validation queries", ("validation_queries",))),
    ),
    "recommend": AppPage(
        title="Recommendations",
        model=RecommenderModel,  # its metrics JSON holds no validation; its backbone task's does
        columns=(("rankers", ("rankers",)), ("with text", ("with_text",)), ("seconds", ("seconds",)),
                 ("backbone", ("backbone",))),
        task="recommend_items",
        task_columns=(("recall@10", ("recall@10",)), ("MRR", ("mrr",)), ("pairs", ("n",))),
    ),
    "chatbot": AppPage(
        title="Chatbot",
        model=None,  # the intent head lives in the backbone version
        task="intents",
        task_columns=(("accuracy", ("accuracy",)), ("macro-F1", ("macro_f1",)), ("ECE", ("ece",)),
                      ("OOS recall", ("oos_recall",)), ("validation", ("n_val",))),
        calibration="chatbot.reviewed_accuracy",
    ),
    "ads": AppPage(
        title="Ads",
        model=CtrModelVersion,
        columns=(("AUC", ("validation", "auc")), ("log loss", ("validation", "log_loss")),
                 ("calibration ratio", ("validation", "calibration_ratio")),
                 ("validation impressions", ("validation_impressions",))),
        calibration="ads.ctr_by_pctr",
    ),
}  # fmt: skip
BACKBONE_COLUMNS: tuple[Column, ...] = (
    ("tasks", ("tasks",)),
    ("steps", ("steps",)),
    ("seconds", ("seconds",)),
    ("device", ("device",)),
)


def index_page() -> dict:
    """The index's data: the apps (with how many metrics each has and their served model) and the backbone."""
    apps = []
    for key, page in APPS.items():
        active = (page.model or ModelVersion).objects.filter(state=TrainedModel.State.ACTIVE).first()
        count = sum(1 for m in metrics.METRICS.values() if m.app == key)
        apps.append({"key": key, "title": page.title, "metrics": count, "active": active.name if active else ""})
    table = models_table("Backbone versions", ModelVersion.objects.all()[:MAX_MODELS], BACKBONE_COLUMNS)
    return {"apps": apps, "backbone": table, "charts": [loss_chart()]}


def app_page(app: str, range_key: str, now: datetime) -> dict:
    """An app's data over the range ``range_key`` (of :data:`RANGES`) ending ``now``: charts, tables and the
    ranges to choose from. KeyError for an unknown app or range."""
    page, span = APPS[app], RANGES[range_key]
    charts = metric_charts(app, span, now)
    if page.calibration:
        charts.append(calibration_chart(page.calibration, span, now))
    if page.task:
        charts.append(loss_chart(page.task))
    tables = []
    if page.model is not None:
        rows = page.model.objects.all()[:MAX_MODELS]
        tables.append(models_table(f"Trained models: {page.model._meta.verbose_name_plural}", rows, page.columns))
    if page.task:
        versions = ModelVersion.objects.filter(tasks__contains=[page.task])[:MAX_MODELS]
        columns = tuple((heading, ("tasks", page.task, *path)) for heading, path in page.task_columns)
        tables.append(models_table(f"Backbone versions: validation of task {page.task!r}", versions, columns))
    ranges = [(key, other.label) for key, other in RANGES.items()]
    return {"charts": charts, "tables": tables, "range_key": range_key, "ranges": ranges}


def metric_charts(app: str, span: Span, now: datetime) -> list[dict]:
    """A "time" chart per metric of ``app``: one line per model version (the total over dimensions), or for
    a metric with a dimension one line per dimension value over all versions (the busiest few)."""
    starts = span.starts(now)
    rows = MetricValue.objects.filter(metric__startswith=f"{app}.", granularity=span.granularity, start__gte=starts[0])
    by_metric = defaultdict(list)
    for row in rows.order_by().values_list("metric", "start", "version", "dimension", "value", "count"):
        by_metric[row[0]].append(row[1:])
    labels = [bucket_label(start, span.granularity) for start in starts]
    position = {start: i for i, start in enumerate(starts)}
    charts = []
    for name, metric in metrics.METRICS.items():
        if metric.app == app:
            lines = dimension_lines(by_metric[name]) if metric.dimension else version_lines(by_metric[name])
            datasets = [{"label": label, "data": aligned(points, position)} for label, points in lines.items()]
            charts.append(chart(name, name, f"{metric.help} ({metric.unit})", "time", datasets, labels=labels))
    return charts


def version_lines(rows: list[tuple]) -> dict[str, list[tuple[datetime, float]]]:
    """{version: [(start, value)]} of the totals (dimension ""), ``all`` first."""
    lines = defaultdict(list)
    for start, version, dimension, value, _ in rows:
        if not dimension:
            lines[version].append((start, value))
    return {v: lines[v] for v in sorted(lines, key=lambda v: (v != metrics.ALL, v))}


def dimension_lines(rows: list[tuple]) -> dict[str, list[tuple[datetime, float]]]:
    """{dimension value: [(start, value)]} over all versions, for the :data:`MAX_DIMENSIONS` values with the
    most observations in the range; the total ("") is labelled ``total`` and comes first when there is one."""
    lines, observed = defaultdict(list), defaultdict(int)
    for start, version, dimension, value, count in rows:
        if version == metrics.ALL:
            lines[dimension].append((start, value))
            observed[dimension] += count
    busiest = sorted(observed, key=lambda d: (d != "", -observed[d], d))[:MAX_DIMENSIONS]
    return {d or "total": lines[d] for d in busiest}


def aligned(points: list[tuple[datetime, float]], position: dict[datetime, int]) -> list[float | None]:
    """The values at their bucket's index in the range; None where a bucket has no row."""
    values: list[float | None] = [None] * len(position)
    for start, value in points:
        if start in position:
            values[position[start]] = finite(value)
    return values


def bucket_label(start: datetime, granularity: str) -> str:
    """An axis label for a bucket (UTC): "11-30 10:00" for an hour, "2026-11-30" for a day."""
    return f"{start:%Y-%m-%d}" if granularity == MetricValue.Granularity.DAY else f"{start:%m-%d %H:00}"


def calibration_chart(name: str, span: Span, now: datetime) -> dict:
    """An "xy" chart of ``name``'s value per bin (dimension "lo-hi", drawn at the bin's middle) against the
    diagonal: one line per version, from the daily rows of the days the range touches, weighted by count."""
    since = bucket_start(span.starts(now)[0], MetricValue.Granularity.DAY)
    rows = (
        MetricValue.objects.filter(metric=name, granularity=MetricValue.Granularity.DAY, start__gte=since)
        .exclude(dimension="")
        .values("version", "dimension")
        .annotate(weighted=Sum(F("value") * F("count")), n=Sum("count"))
        .order_by()
    )
    lines, top = defaultdict(list), 0.0
    for row in rows:
        bounds = bin_bounds(row["dimension"])
        if bounds and row["n"] and finite(row["weighted"]) is not None:
            top = max(top, bounds[1])
            x = round((bounds[0] + bounds[1]) / 2, 6)
            lines[row["version"]].append(
                {"x": x, "y": row["weighted"] / row["n"], "n": row["n"], "bin": row["dimension"]}
            )
    datasets = [
        {"label": v, "data": sorted(lines[v], key=lambda p: p["x"])}
        for v in sorted(lines, key=lambda v: (v != metrics.ALL, v))
    ]
    if datasets:
        datasets.append(
            {"label": "calibrated (y = x)", "data": [{"x": 0, "y": 0}, {"x": top, "y": top}], "diagonal": True}
        )
    metric = metrics.get(name)
    return chart("calibration", f"Calibration: {name}", f"{metric.help} Daily rows, weighted by their counts.", "xy", datasets,
                 x_title=f"{metric.dimension} (bin middle)", y_title="observed")  # fmt: skip


def bin_bounds(label: str) -> tuple[float, float] | None:
    """(lo, hi) of a bin label "lo-hi" (as ``monitoring.metrics.binned`` writes them), None for anything else."""
    try:
        lo, hi = (float(part) for part in label.split("-"))
    except ValueError:
        return None
    return lo, hi


def loss_chart(task: str = "") -> dict:
    """An "xy" chart of the training loss by step of the active backbone version and the one that served
    before it, for ``task`` (every task when empty); versions without a readable ``training.json`` are left out."""
    versions = [ModelVersion.objects.filter(state=TrainedModel.State.ACTIVE).first(), lifecycle.previous(ModelVersion)]
    datasets = []
    for version in filter(None, versions):
        history = training_history(version)
        keys = [f"loss_{task}"] if task else sorted({k for step in history for k in step if k.startswith("loss_")})
        for key in keys:
            points = [{"x": step["step"], "y": finite(step[key])} for step in history if key in step and "step" in step]
            if points:
                label = f"{version.name} ({version.state})" + ("" if task else f" {key.removeprefix('loss_')}")
                datasets.append({"label": label, "data": points})
    help_text = f"Smoothed loss of the {task!r} head" if task else "Smoothed loss of each task head"
    return chart("loss", "Backbone training loss", f"{help_text}, active version and the previous one.", "xy", datasets,
                 x_title="step", y_title="loss")  # fmt: skip


def training_history(version: ModelVersion) -> list[dict]:
    """The ``history`` of the version's ``training.json``; [] when it has none or it cannot be read."""
    if not version.path:
        return []
    try:
        history = json.loads((Path(version.path) / "training.json").read_text()).get("history", [])
    except (OSError, ValueError, AttributeError) as exc:
        logger.debug("no training history for %s: %s", version.name, exc)
        return []
    return [step for step in history if isinstance(step, dict)] if isinstance(history, list) else []


def finite(value: float | None) -> float | None:
    """``value``, or None for NaN and infinities (which JSON cannot carry: a diverged loss, an empty ratio)."""
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def chart(chart_id: str, title: str, help_text: str, kind: str, datasets: list[dict], **extra) -> dict:
    """One chart for the template (title, help, ``empty``) and the script (the rest)."""
    return {
        "id": chart_id,
        "title": title,
        "help": help_text,
        "kind": kind,
        "datasets": datasets,
        "empty": not datasets,
        **extra,
    }


def models_table(title: str, rows, columns: tuple[Column, ...]) -> dict:
    """A table of trained model rows: name, state, created, activated, then ``columns`` from their metrics."""
    headings = ["name", "state", "created (UTC)", "activated (UTC)", *(heading for heading, _ in columns)]
    cells = [
        [
            row.name,
            row.state,
            moment(row.created_at),
            moment(row.activated_at),
            *(cell(lookup(row.metrics, path)) for _, path in columns),
        ]
        for row in rows
    ]
    return {"title": title, "headings": headings, "rows": cells}


def lookup(data, path: tuple[str, ...]):
    """The value at ``path`` in nested dicts, None where a key is missing."""
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def cell(value) -> str:
    """A table cell: floats to 4 significant digits, a dict as its keys (e.g. a version's tasks), "-" for nothing."""
    if value is None or value == {}:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return ", ".join(value) if isinstance(value, dict) else str(value)


def moment(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"
