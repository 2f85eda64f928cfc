"""Ad operations: selection by expected value under budgets, click charging, pCTR training and serving.

Pricing (documented for advertisers): ads are ranked by expected value per impression,
``bid x pCTR``; an ad needs at least the slot's reserve price. A click costs the generalised
second price: the smallest cost per click that would still have kept the ad's rank,
``max(next ad's bid x pCTR, reserve) / own pCTR``, never more than the ad's own bid. The price
is fixed when the ad is served and stored with the impression's token.

Budgets: a click is charged through one conditional UPDATE of the campaign's spend row for the
day (``amount <= budget - price``), so concurrent clicks can never push spend past the daily
budget; a click that would is recorded but not charged. Each token is clicked at most once
(a conditional UPDATE on ``clicked_at IS NULL``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, Value
from django.utils import timezone

from ads.ml import CtrConfig, CtrData, CtrModel
from ads.models import Ad, AdSlot, Campaign, CampaignSpend, CtrModelVersion, ServedImpression

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
]


class AdsError(Exception):
    """Bad input to an ads operation; ``field`` names what was wrong, ``status`` the HTTP status."""

    def __init__(self, message: str, *, field: str = "non_field_errors", status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


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
    """Look up the context product by SKU; raise AdsError (field ``context``) for an unknown one."""
    from catalog.services import products_by_sku

    context = Context(query=query.strip(), customer=customer.strip())
    if product:
        found = products_by_sku([product]).get(product)
        if found is None:
            raise AdsError(f"unknown product SKU {product!r}", field="context")
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
    """Ads that match the context and whose campaign can still afford one click today (spend read now)."""
    spent = dict(CampaignSpend.objects.filter(day=now.date()).values_list("campaign_id", "amount"))
    matches: dict[int, bool] = {}
    eligible = []
    for ad in serving_catalogue().ads:
        campaign = ad.campaign
        if campaign.pk not in matches:
            affordable = campaign.daily_budget >= spent.get(campaign.pk, Decimal("0")) + campaign.bid_per_click
            matches[campaign.pk] = affordable and campaign_matches(campaign, context, now)
        if matches[campaign.pk]:
            eligible.append(ad)
    return eligible


# --- pCTR serving ----------------------------------------------------------------------------


class Scorer:
    """The serving pCTR model of this process: the active CtrModelVersion, re-checked every few seconds.

    Ad creative embeddings are read (or computed and stored) once per (backbone version, ad, ad
    update time) and kept.
    """

    CHECK_SECONDS = 5.0

    def __init__(self):
        self.lock = threading.RLock()
        self.version_id: int | None = None
        self.version: CtrModelVersion | None = None
        self.model: CtrModel | None = None
        self.checked_at = 0.0
        self.ad_vectors: dict[tuple[int, int, float], np.ndarray] = {}

    def current(self) -> tuple[CtrModelVersion | None, CtrModel | None]:
        """Return (active version, its loaded model), or (None, None) when no pCTR model serves."""
        now = time.monotonic()
        with self.lock:
            if now - self.checked_at >= self.CHECK_SECONDS:
                version = CtrModelVersion.objects.filter(status=CtrModelVersion.Status.ACTIVE).first()
                if version is None:
                    self.version_id, self.model, self.version = None, None, None
                elif version.pk != self.version_id:
                    self.model = CtrModel.load(Path(version.path))
                    self.version_id, self.version = version.pk, version
                self.checked_at = now
            return self.version, self.model

    def reset(self) -> None:
        with self.lock:
            self.version_id, self.version, self.model, self.checked_at = None, None, None, 0.0
            self.ad_vectors.clear()


SCORER = Scorer()


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


def embed_with_backbone(texts: list[str]) -> tuple[int, np.ndarray]:
    """Embed texts with the active backbone version; return (version id, vectors)."""
    from backbone.services import active_encoder

    version, encoder = active_encoder()
    return version.pk, encoder.encode(texts)


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
    return np.stack([SCORER.ad_vectors[key] for key in keys]) if keys else np.zeros((0, 384), np.float32)


def ad_text_vectors(ads: list[Ad]) -> np.ndarray:
    """Creative embeddings of ``ads``: rows of the catalogue's matrix, embedded once per backbone version.

    One thread embeds what is missing while the others wait, instead of all repeating it.
    """
    from backbone.services import active_encoder

    version, encoder = active_encoder()
    catalogue = serving_catalogue()
    rows = [catalogue.position.get(ad.pk) for ad in ads]
    with SCORER.lock:
        if any(row is None or catalogue.ads[row].updated_at != ad.updated_at for row, ad in zip(rows, ads)):
            return _embed_ads(ads, version.pk, encoder)  # ads from elsewhere than the serving catalogue
        if catalogue.vectors_version != version.pk:
            catalogue.vectors = _embed_ads(catalogue.ads, version.pk, encoder)
            catalogue.vectors_version = version.pk
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


def predict_ctr(*, ads: list[Ad], slot: AdSlot, context: Context, now: datetime) -> tuple[np.ndarray, str]:
    """Calibrated pCTR of each ad in this slot and context, and the name of the model that gave it."""
    if not ads:
        return np.zeros(0), ""
    version, model = SCORER.current()
    if model is None:
        prior = historical_ctr([ad.pk for ad in ads])
        return np.asarray([prior[ad.pk] for ad in ads]), "historical_ctr"
    texts = [ad_text_vectors(ads)]
    if model.config.text_slots > 1:
        _, ctx = embed_with_backbone([context.text])
        texts.append(ctx)  # one row: the model projects it once for all candidates
    shared = context_features(slot=slot, context=context, now=now)
    catalogue = serving_catalogue()
    rows = [catalogue.position.get(ad.pk) for ad in ads]
    features = [catalogue.features[row] if row is not None else ad_features(ad) for row, ad in zip(rows, ads)]
    return model.predict_candidates(shared, features, texts), version.name


# --- selection and clicks --------------------------------------------------------------------


def money(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_UP)


def select_ads(*, slot: str, query: str = "", product: str = "", customer: str = "", k: int = 1) -> dict[str, Any]:
    """Pick up to ``k`` ads (one per campaign) for a slot by expected value bid x pCTR above the reserve.

    Side effects: one ServedImpression row (with a fresh token) per ad returned.
    Raises AdsError for an unknown or inactive slot or an unknown product.
    """
    slot_row = AdSlot.objects.filter(name=slot, active=True).first()
    if slot_row is None:
        raise AdsError(f"unknown or inactive ad slot {slot!r}", field="slot")
    context = resolve_context(query=query, product=product, customer=customer)
    now = timezone.now()
    ads = eligible_ads(context=context, now=now)
    pctr, model_name = predict_ctr(ads=ads, slot=slot_row, context=context, now=now)
    ranked = sorted(
        ((float(ad.campaign.bid_per_click) * p, p, ad) for ad, p in zip(ads, pctr)), key=lambda x: (-x[0], x[2].pk)
    )
    reserve = float(slot_row.reserve_price)
    chosen, seen = [], set()
    for ev, p, ad in ranked:
        if ev < reserve or ad.campaign_id in seen:
            continue
        seen.add(ad.campaign_id)
        chosen.append((ev, p, ad))
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
            )
        )
    ServedImpression.objects.bulk_create(impressions)
    return {
        "slot": slot_row.name,
        "model": model_name,
        "candidates": len(ads),
        "ads": [
            {
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
            for imp in impressions
        ],
    }


def charge_campaign(*, campaign: Campaign, day: date, price: Decimal) -> bool:
    """Add ``price`` to the campaign's spend of ``day`` unless that would pass its daily budget.

    One conditional UPDATE (the row lock serialises concurrent charges; PostgreSQL re-checks the
    condition on the locked row), so spend never exceeds the budget. Returns whether it charged.
    """
    CampaignSpend.objects.bulk_create([CampaignSpend(campaign=campaign, day=day)], ignore_conflicts=True)
    return bool(
        CampaignSpend.objects.filter(campaign=campaign, day=day, amount__lte=campaign.daily_budget - price).update(
            amount=F("amount") + price, clicks=F("clicks") + 1
        )
    )


def record_click(*, token: str) -> dict[str, Any]:
    """Record the click of a served impression once and charge its campaign.

    Raises AdsError 404 for an unknown token and 409 for a token already clicked (never charged twice).
    Side effects: sets ``clicked_at`` and ``charged`` on the impression, adds to the day's spend.
    """
    now = timezone.now()
    with transaction.atomic():
        claimed = ServedImpression.objects.filter(token=token, clicked_at__isnull=True).update(clicked_at=now)
        if not claimed:
            if ServedImpression.objects.filter(token=token).exists():
                raise AdsError(
                    "this impression was already clicked; it is not charged again", field="token", status=409
                )
            raise AdsError("unknown impression token", field="token", status=404)
        impression = ServedImpression.objects.select_related("campaign").get(token=token)
        charged = charge_campaign(campaign=impression.campaign, day=now.date(), price=impression.price)
        impression.charged = impression.price if charged else Decimal("0")
        impression.save(update_fields=["charged"])
    return {"token": token, "ad_id": impression.ad_id, "charged": impression.charged, "budget_exhausted": not charged}


# --- pCTR training ---------------------------------------------------------------------------


def start_ctr_training(*, parameters: dict[str, Any] | None = None) -> CtrModelVersion:
    """Create a queued pCTR model version and enqueue ``ads.train_ctr`` on the training queue after commit."""
    name = timezone.now().strftime("ctr-%Y%m%d-%H%M%S-%f")
    with transaction.atomic():
        version = CtrModelVersion.objects.create(name=name, parameters=parameters or {})
        transaction.on_commit(lambda: _enqueue_training(version.pk))
    return version


def _enqueue_training(version_id: int) -> None:
    from ads.tasks import train_ctr

    train_ctr.delay(version_id)


def training_data(*, limit: int | None = None) -> tuple[CtrData, list[datetime]]:
    """Served impressions (oldest first) as CtrData with the ad creative and context texts embedded."""
    rows = list(ServedImpression.objects.select_related("ad").order_by("served_at", "id")[: limit or None])
    if not rows:
        return CtrData(rows=[], labels=np.zeros(0)), []
    ad_texts = sorted({r.ad.creative_text for r in rows})
    ctx_texts = sorted({r.context_text for r in rows})
    _, ad_vectors = embed_with_backbone(ad_texts)
    _, ctx_vectors = embed_with_backbone(ctx_texts)
    ad_pos = {t: i for i, t in enumerate(ad_texts)}
    ctx_pos = {t: i for i, t in enumerate(ctx_texts)}
    data = CtrData(
        rows=[r.features for r in rows],
        labels=np.asarray([1.0 if r.clicked_at else 0.0 for r in rows]),
        text_ids=[
            np.asarray([ad_pos[r.ad.creative_text] for r in rows]),
            np.asarray([ctx_pos[r.context_text] for r in rows]),
        ],
        text_vectors=[ad_vectors, ctx_vectors],
    )
    return data, [r.served_at for r in rows]


def _log(version_id: int, line: str) -> None:
    from django.db.models.functions import Concat

    stamp = timezone.now().strftime("%H:%M:%S")
    CtrModelVersion.objects.filter(pk=version_id).update(log=Concat(F("log"), Value(f"{stamp} {line}\n")))


def train_ctr_model(*, version_id: int) -> CtrModelVersion | None:
    """Claim a queued pCTR version and train it on the served impressions; activate it if asked.

    The last 20 % of impressions by time are the validation split (early stopping, Platt
    calibration, reported metrics). Returns None when the version was not queued (already claimed).
    Side effects: a folder under ``MODELS_DIR/ads/``, updates of the version row.
    """
    claimed = CtrModelVersion.objects.filter(pk=version_id, status=CtrModelVersion.Status.QUEUED).update(
        status=CtrModelVersion.Status.RUNNING
    )
    if not claimed:
        logger.info("ctr model %s is not queued; skipping", version_id)
        return None
    version = CtrModelVersion.objects.get(pk=version_id)
    params = version.parameters
    try:
        from ads.ml import ctr_metrics
        from backbone.services import get_active_version

        data, _ = training_data(limit=params.get("limit"))
        if len(data) < 20 or data.labels.sum() < 2:
            raise AdsError(f"not enough served impressions with clicks to train ({len(data)} impressions)")
        cut = int(len(data) * 0.8)
        train, val = data.subset(np.arange(cut)), data.subset(np.arange(cut, len(data)))
        # a small MLP keeps scoring 1,000 candidates within a few milliseconds on one CPU thread
        config = CtrConfig(fields=SERVING_FIELDS, text_slots=2, hidden=[64], seed=int(params.get("seed", 13)))
        for key in ("dim", "lr", "max_epochs", "patience", "batch_size", "hidden", "dropout"):
            if key in params:
                setattr(config, key, params[key])
        torch.set_num_threads(settings.BACKBONE_TORCH_THREADS or torch.get_num_threads())
        model = CtrModel(config).fit(train, val, progress=lambda line: _log(version_id, line))
        metrics = {
            "validation": ctr_metrics(val.labels, model.predict(val)),
            "train_impressions": len(train),
            "validation_impressions": len(val),
        }
        folder = Path(settings.MODELS_DIR) / "ads" / version.name
        model.save(folder, metrics)
        CtrModelVersion.objects.filter(pk=version_id).update(
            status=CtrModelVersion.Status.READY,
            path=str(folder),
            metrics=metrics,
            backbone_version=get_active_version(),
            finished_at=timezone.now(),
        )
        _log(version_id, f"validation {metrics['validation']}")
    except Exception as exc:
        logger.exception("ctr model %s failed", version_id)
        CtrModelVersion.objects.filter(pk=version_id).update(
            status=CtrModelVersion.Status.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        return CtrModelVersion.objects.get(pk=version_id)
    if params.get("activate"):
        activate_ctr_model(version_id=version_id)
    return CtrModelVersion.objects.get(pk=version_id)


def activate_ctr_model(*, version_id: int) -> CtrModelVersion:
    """Make a ready pCTR version the serving one (the previous one is retired); serving picks it up within seconds."""
    with transaction.atomic():
        version = CtrModelVersion.objects.select_for_update().get(pk=version_id)
        if version.status not in (
            CtrModelVersion.Status.READY,
            CtrModelVersion.Status.RETIRED,
            CtrModelVersion.Status.ACTIVE,
        ):
            raise AdsError(f"version {version.name} is {version.status}, not ready")
        CtrModelVersion.objects.filter(status=CtrModelVersion.Status.ACTIVE).exclude(pk=version_id).update(
            status=CtrModelVersion.Status.RETIRED
        )
        try:
            CtrModelVersion.objects.filter(pk=version_id).update(status=CtrModelVersion.Status.ACTIVE)
        except IntegrityError as exc:  # a concurrent activation won
            raise AdsError("another version was activated at the same time; retry", status=409) from exc
    version.refresh_from_db()
    return version


def build_text_training_task(parameters: dict[str, Any]):
    """The ``ads_ctr`` task of the shared trainer, built from the served impressions (oldest first)."""
    from ads.ml import AdTextTask

    limit = int(parameters.get("ads_limit", 20000))
    rows = (
        ServedImpression.objects.select_related("ad")
        .order_by("-served_at", "-id")
        .values_list("ad__title", "ad__text", "context_text", "clicked_at")[:limit]
    )
    examples = [
        (" | ".join(p for p in (title, text) if p), context, clicked is not None)
        for title, text, context, clicked in reversed(list(rows))
    ]
    return AdTextTask(examples, weight=float(parameters.get("ads_weight", 1.0)))
