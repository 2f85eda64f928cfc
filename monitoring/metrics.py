"""The online metrics: what each app's logs in PostgreSQL say about the served models, over a time range.

Each :class:`Metric` computes rows ``(version, dimension, value, count)`` for ``[start, end)``: one per
model version that served in the range, and one with version :data:`ALL` over all of them; ``count``
is how many observations the value stands on (searches, impressions, messages). A metric with a
``dimension`` (recommend's ``source``, ads' ``campaign``, chat's ``intent``) has rows per dimension
value too; ``""`` is the total over them. The aggregate task stores these rows per hour and per day
(:mod:`monitoring.services`); alert rules compute them over their own window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    Case,
    CharField,
    Count,
    Exists,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import NullIf

from ads.models import Campaign, ServedImpression
from catalog.models import Event
from chatbot.models import Message
from recommend.models import RecommendationLog
from search.models import SearchClick, SearchQueryLog

ALL = "all"  # the version (or dimension "") of a row over every version
NONE = "none"  # the version of rows logged without one (e.g. a fallback before any model)
Row = tuple[str, str, float, int]


@dataclass(frozen=True)
class Metric:
    name: str  # "<app>.<what>", e.g. "search.zero_result_rate"
    help: str
    unit: str  # "count", "ratio" (0-1), "ms", "position", "money", "confidence"
    compute: Callable[[datetime, datetime], list[Row]]
    dimension: str = ""  # the label of the rows' dimension, if the metric has one
    versioned: bool = True  # rows per model version; False: only version "all"
    totalled: bool = True  # a row with dimension "" (the total over the dimension's values)

    @property
    def app(self) -> str:
        return self.name.split(".")[0]


class Percentile(Aggregate):
    """PostgreSQL's ``percentile_cont(p) WITHIN GROUP (ORDER BY expression)``."""

    function = "percentile_cont"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, percentile: float, **extra):
        super().__init__(expression, percentile=float(percentile), **extra)


def share(condition: Q) -> Avg:
    """The share (0-1) of rows meeting ``condition``."""
    return Avg(Case(When(condition, then=Value(1.0)), default=Value(0.0), output_field=FloatField()))


def grouped(queryset: QuerySet, version: str | None, value, count=None, dimension: str | None = None) -> list[Row]:
    """Rows of ``value`` per ``version`` field (None: no such rows) and per ``dimension`` field, and over
    all versions, in one query each; ``count`` defaults to the number of rows behind each value.
    Empty groups are left out."""
    count = count if count is not None else Count("pk")
    queryset = queryset.order_by()  # a model's default ordering would join the GROUP BY
    keys = [version] + ([dimension] if dimension else [])
    rows = [
        (str(r[version] or NONE), str(r[dimension]) if dimension else "", r["v"], r["n"])
        for r in (queryset.values(*keys).annotate(v=value, n=count) if version else [])
    ]
    if dimension:
        totals = [
            (ALL, str(r[dimension]), r["v"], r["n"]) for r in queryset.values(dimension).annotate(v=value, n=count)
        ]
    else:
        total = queryset.aggregate(v=value, n=count)
        totals = [(ALL, "", total["v"], total["n"])]
    return [(v, d, float(val), int(n)) for v, d, val, n in rows + totals if val is not None and n]


def counted(rows: list[Row]) -> list[Row]:
    """Counts as values: a count metric's value is its count."""
    return [(v, d, float(n), n) for v, d, _, n in rows]


# --- search -------------------------------------------------------------------------------------


def served_by(prefix: str = "") -> Case:
    """The search model a log row names: its learned ranker's row, else the backbone version (fusion)."""
    return Case(
        When(**{f"{prefix}ranker_name": ""}, then=F(f"{prefix}model_version")),
        default=F(f"{prefix}ranker_name"),
        output_field=CharField(),
    )


def searches(start: datetime, end: datetime) -> QuerySet:
    return SearchQueryLog.objects.filter(created_at__gte=start, created_at__lt=end).annotate(served_by=served_by())


def search_value(value, count=None) -> Callable[[datetime, datetime], list[Row]]:
    return lambda start, end: grouped(searches(start, end), "served_by", value, count)


def search_clicked(start: datetime, end: datetime) -> list[Row]:
    clicked = Exists(SearchClick.objects.filter(query=OuterRef("pk")))
    return grouped(searches(start, end).annotate(clicked=clicked), "served_by", share(Q(clicked=True)))


def search_ab_clicked(start: datetime, end: datetime) -> list[Row]:
    """Share of searches with a click, per A/B arm of a running test (sessions in it)."""
    clicked = Exists(SearchClick.objects.filter(query=OuterRef("pk")))
    tested = searches(start, end).exclude(arm="").annotate(clicked=clicked)
    return grouped(tested, None, share(Q(clicked=True)), dimension="arm")


def click_position(start: datetime, end: datetime) -> list[Row]:
    clicks = SearchClick.objects.filter(query__created_at__gte=start, query__created_at__lt=end)
    return grouped(clicks.annotate(served_by=served_by("query__")), "served_by", Avg("position"))


# --- recommend ----------------------------------------------------------------------------------

_LOG, _EVENT = RecommendationLog._meta.db_table, Event._meta.db_table
_OPENS = "e.rec_id = l.rec_id AND e.product_id = ANY(l.products) AND e.type IN ('click', 'view', 'cart', 'purchase')"
_BY_SOURCE = "GROUP BY GROUPING SETS ((l.model_version, source), (source), (l.model_version), ())"
_WINDOW = "l.created_at >= %s AND l.created_at < %s"


def rec_sql(*, clicks: bool) -> str:
    """The SQL counting items shown in ``[%s, %s)`` (or, with ``clicks``, attributed clicks: distinct items
    of an answer that a later event echoing its rec_id opened): per (version, source), per source,
    per version and in all."""
    if clicks:
        return (
            "SELECT l.model_version, l.sources[array_position(l.products, e.product_id)] AS source, "
            f"count(DISTINCT (l.id, e.product_id)) FROM {_LOG} l JOIN {_EVENT} e ON {_OPENS} "
            f"WHERE {_WINDOW} {_BY_SOURCE}"
        )
    return (
        f"SELECT l.model_version, source, count(*) FROM {_LOG} l, unnest(l.sources) source WHERE {_WINDOW} {_BY_SOURCE}"
    )


# per A/B arm: for-you answers of a test, and how many of them had an attributed click
_AB_SQL = (
    f"SELECT l.arm, count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM {_EVENT} e WHERE {_OPENS})) "
    f"FROM {_LOG} l WHERE {_WINDOW} AND l.kind = 'for_you' AND l.arm <> '' GROUP BY l.arm"
)


def _rec_counts(sql: str, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    """{(version, source): n} from a GROUPING SETS query (NULL version = all, NULL source = every source)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, [start, end])
        return {
            (ALL if version is None else version or NONE, source or ""): n
            for version, source, n in cursor.fetchall()
            if n  # the empty grouping set () has a row even when nothing was shown
        }


def rec_impressions(start: datetime, end: datetime) -> list[Row]:
    return [(v, s, float(n), n) for (v, s), n in _rec_counts(rec_sql(clicks=False), start, end).items()]


def rec_clicks(start: datetime, end: datetime) -> list[Row]:
    return [(v, s, float(n), n) for (v, s), n in _rec_counts(rec_sql(clicks=True), start, end).items()]


def rec_ctr(start: datetime, end: datetime) -> list[Row]:
    """Attributed clicks per item shown (a click is any later event that echoes the rec_id for that item)."""
    clicks = _rec_counts(rec_sql(clicks=True), start, end)
    return [
        (v, s, clicks.get((v, s), 0) / n, n) for (v, s), n in _rec_counts(rec_sql(clicks=False), start, end).items()
    ]


def rec_ab_ctr(start: datetime, end: datetime) -> list[Row]:
    """Share of for-you answers with an attributed click, per A/B arm of a running test: the answer is the
    unit (its items are shown together, so counting items would make the arm's interval too narrow)."""
    with connection.cursor() as cursor:
        cursor.execute(_AB_SQL, [start, end])
        return [(ALL, arm, clicked / n, n) for arm, n, clicked in cursor.fetchall()]


def rec_fallback(start: datetime, end: datetime) -> list[Row]:
    """The share of for-you answers that fell back to popular items, per reason ("" = any reason)."""
    answers = RecommendationLog.objects.filter(
        kind=RecommendationLog.Kind.FOR_YOU, created_at__gte=start, created_at__lt=end
    )
    counts = dict(answers.order_by().values_list("fallback").annotate(n=Count("pk")))
    total = sum(counts.values())
    fallbacks = {reason: n for reason, n in counts.items() if reason}
    rows = [(ALL, reason, n / total, total) for reason, n in fallbacks.items()]
    return rows + ([(ALL, "", sum(fallbacks.values()) / total, total)] if total else [])


# --- chatbot ------------------------------------------------------------------------------------


def messages(start: datetime, end: datetime) -> QuerySet:
    return Message.objects.filter(created_at__gte=start, created_at__lt=end)


def chat_value(value) -> Callable[[datetime, datetime], list[Row]]:
    return lambda start, end: grouped(messages(start, end), "version__name", value)


def chat_corrections(start: datetime, end: datetime) -> list[Row]:
    """Messages an operator relabelled, per intent the classifier had given them."""
    relabelled = messages(start, end).filter(review_status=Message.Review.RELABELLED)
    return counted(grouped(relabelled, "version__name", Count("pk"), dimension="intent__name"))


# --- ads ----------------------------------------------------------------------------------------

CLICKED = Q(clicked_at__isnull=False)


def impressions(start: datetime, end: datetime) -> QuerySet:
    return ServedImpression.objects.filter(served_at__gte=start, served_at__lt=end)


def ads_value(value) -> Callable[[datetime, datetime], list[Row]]:
    return lambda start, end: grouped(impressions(start, end), "model_name", value)


def ads_ab_ctr(start: datetime, end: datetime) -> list[Row]:
    """Observed CTR per A/B arm of a running test (customers in it)."""
    tested = impressions(start, end).exclude(arm="")
    return grouped(tested, None, share(CLICKED), dimension="arm")


def ads_spend(start: datetime, end: datetime) -> list[Row]:
    """What each campaign was charged for clicks in the range (by the time of the click)."""
    clicks = ServedImpression.objects.filter(clicked_at__gte=start, clicked_at__lt=end, charged__isnull=False)
    return grouped(clicks, None, Sum("charged"), dimension="campaign_id")


def ads_budget_used(start: datetime, end: datetime) -> list[Row]:
    """Spend as a share of each campaign's budget for the range (its daily budget x the range in days)."""
    days = (end - start).total_seconds() / 86400
    budgets = dict(Campaign.objects.values_list("pk", "daily_budget"))
    return [
        (v, d, value / (float(budgets[int(d)]) * days), n)
        for v, d, value, n in ads_spend(start, end)
        if d and budgets.get(int(d))
    ]


def binned(field: str, edges: tuple[float, ...]) -> Case:
    """The label "lo-hi" of the bin of ``edges`` that ``field`` falls in (the last bin is closed)."""
    whens = [
        When(
            **{f"{field}__gte": lo, f"{field}__lt" if i < len(edges) - 2 else f"{field}__lte": hi},
            then=Value(f"{lo:g}-{hi:g}"),
        )
        for i, (lo, hi) in enumerate(zip(edges, edges[1:]))
    ]
    return Case(*whens, default=Value(""), output_field=CharField())


PCTR_BINS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 1.0)
CONFIDENCE_BINS = (0.0, 0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0)


def ads_reliability(start: datetime, end: datetime) -> list[Row]:
    """Observed CTR per bin of predicted CTR (the online reliability diagram of the pCTR model)."""
    served = impressions(start, end).annotate(bin=binned("pctr", PCTR_BINS))
    return grouped(served, "model_name", share(CLICKED), dimension="bin")


def chat_reliability(start: datetime, end: datetime) -> list[Row]:
    """Share of reviewed messages whose intent the operator confirmed, per bin of confidence."""
    reviewed = (
        messages(start, end)
        .filter(review_status__in=[Message.Review.CONFIRMED, Message.Review.RELABELLED])
        .annotate(bin=binned("confidence", CONFIDENCE_BINS))
    )
    return grouped(reviewed, "version__name", share(Q(review_status=Message.Review.CONFIRMED)), dimension="bin")


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("search.queries", "Searches served.", "count", lambda s, e: counted(search_value(Count("pk"))(s, e))),
        Metric("search.zero_result_rate", "Share of searches with no result.", "ratio", search_value(share(Q(result_count=0)))),
        Metric("search.ctr", "Share of searches with a click on a result.", "ratio", search_clicked),
        Metric("search.ab_ctr", "Share of searches with a click, per A/B arm.", "ratio", search_ab_clicked, "arm", versioned=False, totalled=False),
        Metric("search.mean_click_position", "Mean 1-based position of clicked results.", "position", click_position),
        Metric("search.typo_corrected_share", "Share of searches whose query was corrected.", "ratio", search_value(share(~Q(corrected="")))),
        Metric("search.latency_p50", "Median search time in the server.", "ms", search_value(Percentile("latency_ms", 0.5))),
        Metric("search.latency_p99", "99th percentile of search time in the server.", "ms", search_value(Percentile("latency_ms", 0.99))),
        Metric("recommend.impressions", "Items shown in recommendation answers.", "count", rec_impressions, "source"),
        Metric("recommend.clicks", "Shown items opened (an event echoing the answer's rec_id).", "count", rec_clicks, "source"),
        Metric("recommend.ctr", "Clicks per item shown.", "ratio", rec_ctr, "source"),
        Metric("recommend.ab_ctr", "Share of for-you answers with a click, per A/B arm.", "ratio", rec_ab_ctr, "arm", versioned=False, totalled=False),
        Metric("recommend.fallback_rate", "Share of for-you answers that fell back to popular items.", "ratio", rec_fallback, "fallback", versioned=False),
        Metric("chatbot.messages", "Messages classified.", "count", lambda s, e: counted(chat_value(Count("pk"))(s, e))),
        Metric("chatbot.out_of_scope_rate", "Share of messages out of scope.", "ratio", chat_value(share(Q(outcome=Message.Outcome.OUT_OF_SCOPE)))),
        Metric("chatbot.clarify_rate", "Share of messages answered with a question.", "ratio", chat_value(share(Q(outcome=Message.Outcome.CLARIFY)))),
        Metric("chatbot.hand_off_rate", "Share of messages handed to a person.", "ratio", chat_value(share(Q(hand_off=True)))),
        Metric("chatbot.confidence_p10", "10th percentile of the classifier's confidence.", "confidence", chat_value(Percentile("confidence", 0.1))),
        Metric("chatbot.confidence_p50", "Median confidence of the classifier.", "confidence", chat_value(Percentile("confidence", 0.5))),
        Metric("chatbot.confidence_p90", "90th percentile of the classifier's confidence.", "confidence", chat_value(Percentile("confidence", 0.9))),
        Metric("chatbot.corrections", "Messages relabelled in review, by the intent first given.", "count", chat_corrections, "intent", totalled=False),
        Metric("chatbot.reviewed_accuracy", "Share of reviewed messages confirmed, by confidence bin.", "ratio", chat_reliability, "confidence", totalled=False),
        Metric("ads.impressions", "Ads served.", "count", lambda s, e: counted(ads_value(Count("pk"))(s, e))),
        Metric("ads.clicks", "Served ads clicked (by serving time).", "count", ads_value(Count("pk", filter=CLICKED))),
        Metric("ads.ctr", "Observed click-through rate.", "ratio", ads_value(share(CLICKED))),
        Metric("ads.ab_ctr", "Observed CTR, per A/B arm.", "ratio", ads_ab_ctr, "arm", versioned=False, totalled=False),
        Metric("ads.mean_pctr", "Mean predicted click-through rate of the ads served.", "ratio", ads_value(Avg("pctr"))),
        Metric("ads.calibration_ratio", "Observed CTR / mean predicted CTR (1 = calibrated).", "ratio", ads_value(share(CLICKED) / NullIf(Avg("pctr"), 0.0))),
        Metric("ads.ctr_by_pctr", "Observed CTR by bin of predicted CTR (reliability).", "ratio", ads_reliability, "pctr", totalled=False),
        Metric("ads.spend", "Charged for clicks, per campaign id.", "money", ads_spend, "campaign", versioned=False, totalled=False),
        Metric("ads.budget_used", "Spend / (daily budget x days in the window), per campaign id.", "ratio", ads_budget_used, "campaign", versioned=False, totalled=False),
    ]
}  # fmt: skip


def get(name: str) -> Metric:
    """The metric called ``name``; KeyError for an unknown one."""
    return METRICS[name]


def choices() -> list[tuple[str, str]]:
    return [(name, f"{name} ({m.unit})") for name, m in METRICS.items()]
