"""Ad operations: selection by expected value under budgets, click charging, pCTR serving (training: ``ads.training``).

Pricing (documented for advertisers): ads are ranked by expected value per impression,
``bid x pCTR``; an ad needs at least the slot's reserve price. A click costs the generalised
second price: the smallest cost per click that would still have kept the ad's rank,
``max(next ad's bid x pCTR, reserve) / own pCTR``, never more than the ad's own bid. The price
is fixed when the ad is served and stored with the impression's token.

Budgets (``ads.budget``): a served token reserves its price on its campaign's daily budget while it
can be clicked; an ad is served only while spend + reserved + its price fits the budget, so a click
on a live token is always charged (one conditional UPDATE that never passes the budget), one on an
expired token is refused, and each token is clicked at most once (``clicked_at IS NULL``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from ads import budget
from ads.ml import CtrModel
from ads.models import Ad, AdSlot, Campaign, CtrModelVersion, ServedImpression
from backbone import errors, experiments, lifecycle

logger = logging.getLogger(__name__)

CENT = Decimal("0.0001")
PRIOR_CTR = 0.01
PRIOR_WEIGHT = 200.0
WORD = re.compile(r"\w+")
SERVING_FIELDS = [
    {"name": "slot"},
    {"name": "ad"},
    {"name": "campaign"},
    {"name": "advertiser"},
    {"name": "category"},
    {"name": "hour"},
    {"name": "weekday"},
    {"name": "customer"},
    {"name": "query_words", "kind": "bag", "max_len": 8},
    # the customer's affinity to an advertiser, and each query word's to a campaign (the crosses a
    # sponsored-search click model learns; the recipe's customer x genre on MovieLens)
    {"name": "customer*advertiser", "kind": "cross", "of": ["customer", "advertiser"], "max_len": 1},
    {"name": "query_words*campaign", "kind": "cross", "of": ["query_words", "campaign"], "max_len": 8},
]


class AdsError(errors.InvalidInput):
    """Bad input to an ads operation; ``field`` names what was wrong (the API answers 400)."""


class UnknownImpression(AdsError, errors.NotFound):
    """No served impression has this click token (the API answers 404)."""

    status_code = errors.NotFound.status_code


class AlreadyClicked(AdsError, errors.Conflict):
    """The impression was clicked before; it is not charged again (the API answers 409)."""

    status_code = errors.Conflict.status_code


class ExpiredToken(AdsError, errors.Conflict):
    """The impression's token is past its click window; the click is neither recorded nor charged (409)."""

    status_code = errors.Conflict.status_code


class UnknownReference(AdsError, errors.NotFound):
    """The request names an ad slot or a product that does not exist, or a slot that is off (404)."""

    status_code = errors.NotFound.status_code


class NotEnoughImpressions(AdsError):
    """Too few served impressions (or clicks) to train a pCTR model on."""


# --- eligibility -----------------------------------------------------------------------------


@dataclass
class Context:
    """What the storefront tells about the page: a query, a product (category, title), a customer."""

    query: str = ""
    product_sku: str = ""
    product_title: str = ""
    category: str = ""
    customer: str = ""

    @property
    def words(self) -> set[str]:
        return set(WORD.findall(f"{self.query} {self.product_title}".lower()))

    @property
    def text(self) -> str:
        return " | ".join(p for p in (self.query, self.product_title) if p)


def resolve_context(*, query: str = "", product: str = "", customer: str = "") -> Context:
    """Look up the context product by SKU; raise UnknownReference (field ``context``) for an unknown one."""
    from catalog.services import products_by_sku

    context = Context(query=query.strip(), customer=customer.strip())
    if product:
        found = products_by_sku([product]).get(product)
        if found is None:
            raise UnknownReference(f"unknown product SKU {product!r}", field="context")
        context.product_sku, context.product_title, context.category = found.sku, found.title, found.category_path
    return context


def campaign_matches(campaign: Campaign, context: Context, now: datetime) -> bool:
    """True when the campaign's schedule, dates and targeting admit this context at ``now`` (UTC)."""
    today = now.date()
    if campaign.start_date and today < campaign.start_date:
        return False
    if campaign.end_date and today > campaign.end_date:
        return False
    if campaign.schedule_hours and now.hour not in campaign.schedule_hours:
        return False
    if campaign.schedule_weekdays and now.weekday() not in campaign.schedule_weekdays:
        return False
    if campaign.target_categories and not any(
        context.category == c or context.category.startswith(c.rstrip("/") + "/") for c in campaign.target_categories
    ):
        return False
    if campaign.target_keywords and not context.words & {k.lower() for k in campaign.target_keywords}:
        return False
    return True


CATALOGUE_SECONDS = 5.0  # how stale the serving copy of ads and targeting may be (spend is always read fresh)
_CATALOGUE_LOCK = threading.Lock()


@dataclass
class Catalogue:
    """The serving copy of the active ads: rows, their model fields, and their creative embeddings as one matrix."""

    ads: list[Ad]
    loaded_at: float
    position: dict[int, int]
    features: list[dict[str, Any]]
    vectors: np.ndarray | None = None
    vectors_version: int | None = None


_CATALOGUE: list[Catalogue | None] = [None]


def serving_catalogue() -> Catalogue:
    """Active ads of active campaigns and advertisers, with their campaign, re-read at most every few seconds."""
    now = time.monotonic()
    with _CATALOGUE_LOCK:
        current = _CATALOGUE[0]
        if current is None or now - current.loaded_at >= CATALOGUE_SECONDS:
            ads = list(
                Ad.objects.filter(active=True, campaign__active=True, campaign__advertiser__active=True)
                .select_related("campaign", "landing_product")
                .order_by("id")
            )
            current = _CATALOGUE[0] = Catalogue(
                ads=ads,
                loaded_at=now,
                position={ad.pk: i for i, ad in enumerate(ads)},
                features=[ad_features(ad) for ad in ads],
            )
        return current


def eligible_ads(*, context: Context, now: datetime) -> list[Ad]:
    """Ads that match the context and whose campaign can afford one more click today beyond spend and reservations."""
    committed = budget.committed_amounts(now=now)
    matches: dict[int, bool] = {}
    eligible = []
    for ad in serving_catalogue().ads:
        campaign = ad.campaign
        if campaign.pk not in matches:
            affordable = campaign.daily_budget >= committed.get(campaign.pk, Decimal("0")) + campaign.bid_per_click
            matches[campaign.pk] = affordable and campaign_matches(campaign, context, now)
        if matches[campaign.pk]:
            eligible.append(ad)
    return eligible


# --- pCTR serving ----------------------------------------------------------------------------


@dataclass
class ServingModel:
    """The active pCTR model row, its loaded model, and the backbone version (and encoder) it was trained on."""

    row: CtrModelVersion
    model: CtrModel
    backbone: Any
    encoder: Any


class Scorer:
    """The serving pCTR model of this process: the active CtrModelVersion, re-checked every few seconds.

    Creatives and contexts are embedded with the backbone version the model was trained on (not
    necessarily the active one: a later fine-tune for search does not change what this model reads).
    Creative embeddings are read (or computed and stored) once per (backbone version, ad, ad update time).
    """

    CHECK_SECONDS = 5.0

    def __init__(self):
        self.lock = threading.RLock()
        self.serving: ServingModel | None = None
        self.challenger: ServingModel | None = None
        self.checked_at = 0.0
        self.ad_vectors: dict[tuple[int, int, float], np.ndarray] = {}

    def current(self) -> ServingModel | None:
        """Return the serving model, or None when no pCTR model is active."""
        now = time.monotonic()
        with self.lock:
            if now - self.checked_at >= self.CHECK_SECONDS:
                row = lifecycle.active(CtrModelVersion)
                if row is None:
                    self.serving = None
                elif self.serving is None or self.serving.row.pk != row.pk:
                    self.serving = self.load(row)
                self.checked_at = now
            return self.serving

    def for_customer(self, customer: str) -> tuple[ServingModel | None, str | None]:
        """The model that scores for ``customer`` and its A/B arm: a running experiment's challenger
        in arm B (``backbone.experiments``), else the active model (arm A, or None without one)."""
        challenger, arm = experiments.choose("ads", customer)
        if challenger is None:
            return self.current(), arm
        with self.lock:
            if self.challenger is not None and self.challenger.row.pk == challenger.pk:
                return self.challenger, arm
        loaded = self.load(challenger)  # outside the lock: the process keeps serving while it loads
        with self.lock:
            self.challenger = loaded
        return loaded, arm

    @staticmethod
    def load(row: CtrModelVersion) -> ServingModel:
        """A pCTR row loaded for serving, with the backbone it was fitted on (else the active one)."""
        from backbone.services import get_active_version, serving_encoder

        backbone = row.backbone_version or get_active_version()
        return ServingModel(row, CtrModel.load(Path(row.path)), backbone, serving_encoder(backbone))

    def reset(self) -> None:
        with self.lock:
            self.serving, self.challenger, self.checked_at = None, None, 0.0
            self.ad_vectors.clear()
        experiments.reset_cache()


SCORER = Scorer()


def reset_caches() -> None:
    """Forget the per-process ad catalogue and serving models (tests: an earlier test's ads are gone)."""
    with _CATALOGUE_LOCK:
        _CATALOGUE[0] = None
    SCORER.reset()


def context_features(*, slot: AdSlot, context: Context, now: datetime) -> dict[str, Any]:
    """The fields the serving pCTR model reads that are the same for every candidate of one request."""
    return {
        "slot": slot.name,
        "category": context.category.split("/")[0] if context.category else "",
        "hour": str(now.hour),
        "weekday": str(now.weekday()),
        "customer": context.customer,
        "query_words": sorted(WORD.findall(context.query.lower()))[:8],
    }


def ad_features(ad: Ad) -> dict[str, Any]:
    """The fields the serving pCTR model reads that belong to the ad."""
    return {"ad": str(ad.pk), "campaign": str(ad.campaign_id), "advertiser": str(ad.campaign.advertiser_id)}


def serving_features(*, ad: Ad, slot: AdSlot, context: Context, now: datetime) -> dict[str, Any]:
    """The categorical fields of one (ad, slot, context) that the serving pCTR model reads."""
    return {**context_features(slot=slot, context=context, now=now), **ad_features(ad)}


def _embed_ads(ads: list[Ad], version_id: int, encoder) -> np.ndarray:
    """Creative embeddings through the per-process cache (call with ``SCORER.lock`` held).

    A cache miss reads the stored embeddings of the version (``ads.embeddings``); only ads
    without one (or whose creative text changed) are embedded, and then stored for every worker.
    """
    from ads.embeddings import creative_vectors

    keys = [(version_id, ad.pk, ad.updated_at.timestamp()) for ad in ads]
    missing = [i for i, key in enumerate(keys) if key not in SCORER.ad_vectors]
    if missing:
        vectors = creative_vectors(ads=[ads[i] for i in missing], version_id=version_id, encoder=encoder)
        for i, vector in zip(missing, vectors):
            SCORER.ad_vectors[keys[i]] = vector
    return np.stack([SCORER.ad_vectors[key] for key in keys]) if keys else np.zeros((0, encoder.dim), np.float32)


def ad_text_vectors(ads: list[Ad], *, backbone, encoder) -> np.ndarray:
    """Creative embeddings of ``ads`` by backbone version ``backbone`` (whose ``encoder`` embeds what is not
    stored): rows of the catalogue's matrix, embedded once per version. One thread embeds what is missing
    while the others wait."""
    version_id = backbone.pk
    catalogue = serving_catalogue()
    rows = [catalogue.position.get(ad.pk) for ad in ads]
    with SCORER.lock:
        if any(row is None or catalogue.ads[row].updated_at != ad.updated_at for row, ad in zip(rows, ads)):
            return _embed_ads(ads, version_id, encoder)  # ads from elsewhere than the serving catalogue
        if catalogue.vectors_version != version_id:
            catalogue.vectors = _embed_ads(catalogue.ads, version_id, encoder)
            catalogue.vectors_version = version_id
        return catalogue.vectors[rows]


def historical_ctr(ad_ids: list[int]) -> dict[int, float]:
    """Smoothed observed CTR per ad: (clicks + w * prior) / (impressions + w); the fallback without a model."""
    stats = (
        ServedImpression.objects.filter(ad_id__in=ad_ids)
        .values("ad_id")
        .annotate(shown=Count("id"), clicks=Count("id", filter=Q(clicked_at__isnull=False)))
    )
    by_ad = {s["ad_id"]: (s["shown"], s["clicks"]) for s in stats}
    return {
        i: (by_ad.get(i, (0, 0))[1] + PRIOR_WEIGHT * PRIOR_CTR) / (by_ad.get(i, (0, 0))[0] + PRIOR_WEIGHT)
        for i in ad_ids
    }


def predict_ctr(*, ads: list[Ad], slot: AdSlot, context: Context, now: datetime) -> tuple[np.ndarray, str, str | None]:
    """Calibrated pCTR of each ad in this slot and context, the name of the model that gave it, and
    the A/B arm of the context's customer (None without an experiment)."""
    serving, arm = SCORER.for_customer(context.customer)
    if not ads:
        return np.zeros(0), "", arm
    if serving is None:
        prior = historical_ctr([ad.pk for ad in ads])
        return np.asarray([prior[ad.pk] for ad in ads]), "historical_ctr", arm
    texts = [ad_text_vectors(ads, backbone=serving.backbone, encoder=serving.encoder)]
    if serving.model.config.text_slots > 1:
        texts.append(serving.encoder.encode([context.text]))  # one row: the model projects it once for all
    shared = context_features(slot=slot, context=context, now=now)
    catalogue = serving_catalogue()
    rows = [catalogue.position.get(ad.pk) for ad in ads]
    features = [catalogue.features[row] if row is not None else ad_features(ad) for row, ad in zip(rows, ads)]
    return serving.model.predict_candidates(shared, features, texts), serving.row.name, arm


# --- selection and clicks --------------------------------------------------------------------


def money(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_UP)


def select_ads(*, slot: str, query: str = "", product: str = "", customer: str = "", k: int = 1) -> dict[str, Any]:
    """Pick up to ``k`` ads (one per campaign) for a slot by expected value bid x pCTR above the reserve.

    Side effects: one ServedImpression row (with a fresh token) per ad returned, reserving its price on
    its campaign's budget (``budget.reserve_and_save`` leaves out an ad whose budget a concurrent
    selection filled). Raises AdsError for an unknown or inactive slot or an unknown product.
    """
    slot_row = AdSlot.objects.filter(name=slot, active=True).first()
    if slot_row is None:
        raise UnknownReference(f"unknown or inactive ad slot {slot!r}", field="slot")
    context = resolve_context(query=query, product=product, customer=customer)
    now = timezone.now()
    ads = eligible_ads(context=context, now=now)
    pctr, model_name, arm = predict_ctr(ads=ads, slot=slot_row, context=context, now=now)
    reserve = float(slot_row.reserve_price)
    chosen = rank_by_expected_value(ads, pctr, reserve)
    shown = chosen[: min(k, slot_row.max_ads)]
    impressions = []
    for position, (_ev, p, ad) in enumerate(shown):
        next_ev = chosen[position + 1][0] if position + 1 < len(chosen) else 0.0
        bid = ad.campaign.bid_per_click
        price = min(bid, money(max(next_ev, reserve) / max(p, 1e-9)))
        impressions.append(
            ServedImpression(
                ad=ad,
                campaign=ad.campaign,
                slot=slot_row,
                position=position,
                pctr=float(p),
                bid=bid,
                price=max(price, CENT),
                features=serving_features(ad=ad, slot=slot_row, context=context, now=now),
                context_text=context.text[:1000],
                model_name=model_name,
                arm=arm or "",
                served_at=now,
            )
        )
    impressions = budget.reserve_and_save(impressions=impressions, now=now)
    return {
        "slot": slot_row.name,
        "model": model_name,
        "arm": arm,
        "candidates": len(ads),
        "ads": [served_ad(imp) for imp in impressions],
    }


def rank_by_expected_value(ads: list[Ad], pctr: np.ndarray, reserve: float) -> list[tuple[float, float, Ad]]:
    """(expected value, pCTR, ad) of the best ad of each campaign at or above ``reserve``, best first (ties by id)."""
    ranked = sorted(
        ((float(ad.campaign.bid_per_click) * p, p, ad) for ad, p in zip(ads, pctr)), key=lambda x: (-x[0], x[2].pk)
    )
    chosen, seen = [], set()
    for ev, p, ad in ranked:
        if ev < reserve or ad.campaign_id in seen:
            continue
        seen.add(ad.campaign_id)
        chosen.append((ev, p, ad))
    return chosen


def served_ad(imp: ServedImpression) -> dict[str, Any]:
    """What the storefront is told about one served ad."""
    return {
        "token": imp.token,
        "ad_id": imp.ad_id,
        "campaign_id": imp.campaign_id,
        "title": imp.ad.title,
        "text": imp.ad.text,
        "landing_product": imp.ad.landing_product.sku if imp.ad.landing_product else None,
        "pctr": round(imp.pctr, 6),
        "bid": imp.bid,
        "expected_value": round(float(imp.bid) * imp.pctr, 6),
        "price_per_click": imp.price,
        "position": imp.position,
    }


def record_click(*, token: str) -> dict[str, Any]:
    """Record the click of a served impression once and charge its campaign from the token's reservation.

    Raises UnknownImpression for an unknown token, AlreadyClicked for one clicked before (never charged
    twice), ExpiredToken for one past its click window. Side effects: sets ``clicked_at`` and ``charged``
    on the impression, adds to the spend of the day it was served (whose budget holds its reservation).
    """
    now = timezone.now()
    cutoff = budget.token_cutoff(now)
    with transaction.atomic():
        live = ServedImpression.objects.filter(token=token, clicked_at__isnull=True, served_at__gt=cutoff)
        if not live.update(clicked_at=now):
            refuse_click(token)
        impression = ServedImpression.objects.select_related("campaign").get(token=token)
        day = impression.served_at.date()
        charged = budget.charge_campaign(campaign=impression.campaign, day=day, price=impression.price)
        impression.charged = impression.price if charged else Decimal("0")
        impression.save(update_fields=["charged"])
    return {"token": token, "ad_id": impression.ad_id, "charged": impression.charged, "budget_exhausted": not charged}


def refuse_click(token: str) -> NoReturn:
    """Raise why ``token`` cannot be clicked: unknown, clicked before, or expired."""
    impression = ServedImpression.objects.filter(token=token).values("clicked_at").first()
    if impression is None:
        raise UnknownImpression("unknown impression token", field="token")
    if impression["clicked_at"] is not None:
        raise AlreadyClicked("this impression was already clicked; it is not charged again", field="token")
    minutes = budget.CLICK_TOKEN_SECONDS // 60
    raise ExpiredToken(f"this ad token expired {minutes} minutes after it was served; not charged", field="token")
