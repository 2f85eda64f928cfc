"""Campaign budgets: what served click tokens reserve, and what their clicks charge.

A served impression reserves its price (what a click on it costs) on its campaign's budget of the
day (UTC) it was served, for as long as its token can be clicked (``CLICK_TOKEN_SECONDS``). An ad
is served only while the day's spend + reserved + its price fits the campaign's daily budget,
checked with the day's spend row locked, so outstanding tokens never add up to more than the
budget and a click on a live token is charged from its own reservation. A token clicked after its
window is refused: its reservation was released when the window closed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Q, Sum

from ads.models import Ad, Campaign, CampaignSpend, ServedImpression

CLICK_TOKEN_SECONDS = 15 * 60


def token_cutoff(now: datetime) -> datetime:
    """Tokens served at or before this time have expired at ``now``."""
    return now - timedelta(seconds=CLICK_TOKEN_SECONDS)


def reserved_amounts(*, now: datetime, campaign_ids: list[int] | None = None) -> dict[int, Decimal]:
    """What the unclicked, unexpired tokens served on ``now``'s day reserve, per campaign (all, or ``campaign_ids``).

    No upper time bound but the day's end: a concurrent selection's ``now`` may be a little later.
    """
    day_start = datetime.combine(now.date(), time.min, tzinfo=UTC)
    outstanding = ServedImpression.objects.filter(
        Q(served_at__gt=token_cutoff(now)),
        Q(served_at__gte=day_start),
        served_at__lt=day_start + timedelta(days=1),
        clicked_at__isnull=True,
    )
    if campaign_ids is not None:
        outstanding = outstanding.filter(campaign_id__in=campaign_ids)
    return dict(outstanding.values("campaign_id").annotate(total=Sum("price")).values_list("campaign_id", "total"))


def committed_amounts(*, now: datetime) -> dict[int, Decimal]:
    """Each campaign's spend on ``now``'s day plus what its outstanding tokens reserve (unlocked: for eligibility)."""
    committed = dict(CampaignSpend.objects.filter(day=now.date()).values_list("campaign_id", "amount"))
    for campaign_id, reserved in reserved_amounts(now=now).items():
        committed[campaign_id] = committed.get(campaign_id, Decimal("0")) + reserved
    return committed


def reserve_and_save(*, impressions: list[ServedImpression], now: datetime) -> list[ServedImpression]:
    """Save the impressions (best first) whose campaign's budget still covers spend + reserved + price.

    Locks the day's spend rows of their campaigns, in campaign order (concurrent selections never
    deadlock), until the impressions are saved, so concurrent selections reserve one after the
    other. An impression whose campaign no longer fits (a concurrent selection took the rest) is
    dropped; the kept ones are renumbered by position. Returns the saved impressions.

    So is one whose ad or campaign was deleted or paused since the process's serving catalogue
    read it (``ads.services.CATALOGUE_SECONDS``): its rows would break the foreign keys (a 500).
    """
    if not impressions:
        return []
    with transaction.atomic():
        live = set(
            Ad.objects.filter(
                pk__in=[imp.ad_id for imp in impressions], active=True, campaign__active=True
            ).values_list("pk", flat=True)
        )
        impressions = [imp for imp in impressions if imp.ad_id in live]
        if not impressions:
            return []
        day = now.date()
        ids = sorted({imp.campaign_id for imp in impressions})
        CampaignSpend.objects.bulk_create([CampaignSpend(campaign_id=i, day=day) for i in ids], ignore_conflicts=True)
        locked = (
            CampaignSpend.objects.select_for_update(of=("self",))
            .select_related("campaign")
            .filter(campaign_id__in=ids, day=day)
            .order_by("campaign_id")
        )
        room = {row.campaign_id: row.campaign.daily_budget - row.amount for row in locked}
        reserved = reserved_amounts(now=now, campaign_ids=ids)
        kept = []
        for impression in impressions:
            after = reserved.get(impression.campaign_id, Decimal("0")) + impression.price
            if after <= room[impression.campaign_id]:
                reserved[impression.campaign_id] = after
                impression.position = len(kept)
                kept.append(impression)
        ServedImpression.objects.bulk_create(kept)
    return kept


def charge_campaign(*, campaign: Campaign, day: date, price: Decimal) -> bool:
    """Add ``price`` to the campaign's spend of ``day`` unless that would pass its daily budget.

    One conditional UPDATE (the row lock serialises concurrent charges; PostgreSQL re-checks the
    condition on the locked row), so spend never exceeds the budget. A click on a live token fits
    (its price was reserved); only a budget lowered since it was served refuses it. Returns whether it charged.
    """
    CampaignSpend.objects.bulk_create([CampaignSpend(campaign=campaign, day=day)], ignore_conflicts=True)
    return bool(
        CampaignSpend.objects.filter(campaign=campaign, day=day, amount__lte=campaign.daily_budget - price).update(
            amount=F("amount") + price, clicks=F("clicks") + 1
        )
    )
