"""Admin of the ads app: advertisers, campaigns with their delivery figures, ads, slots, impressions, pCTR models."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Avg, Count, Q, Sum

from ads.models import Ad, AdImpression, AdSlot, Advertiser, Campaign, CampaignSpend, CtrModelVersion, ServedImpression
from backbone.admin import TrainedModelAdmin


@admin.register(AdImpression)
class AdImpressionAdmin(admin.ModelAdmin):
    list_display = ["external_id", "dataset", "clicked", "created_at"]
    list_filter = ["dataset", "clicked"]
    search_fields = ["external_id"]
    show_full_result_count = False


@admin.register(Advertiser)
class AdvertiserAdmin(admin.ModelAdmin):
    list_display = ["name", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["name"]


class AdInline(admin.TabularInline):
    model = Ad
    extra = 0
    fields = ["title", "text", "landing_product", "active"]
    raw_id_fields = ["landing_product"]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "advertiser",
        "active",
        "daily_budget",
        "bid_per_click",
        "impressions",
        "clicks",
        "ctr",
        "predicted_ctr",
        "spend",
    ]
    list_filter = ["active", "advertiser", "start_date", "end_date"]
    search_fields = ["name", "advertiser__name"]
    inlines = [AdInline]

    def get_queryset(self, request):
        clicked = Q(impressions__clicked_at__isnull=False)
        return (
            super()
            .get_queryset(request)
            .select_related("advertiser")
            .annotate(
                n_impressions=Count("impressions"),
                n_clicks=Count("impressions", filter=clicked),
                total_spend=Sum("impressions__charged"),
                mean_pctr=Avg("impressions__pctr"),
            )
        )

    @admin.display(description="impressions", ordering="n_impressions")
    def impressions(self, obj):
        return obj.n_impressions

    @admin.display(description="clicks", ordering="n_clicks")
    def clicks(self, obj):
        return obj.n_clicks

    @admin.display(description="observed CTR")
    def ctr(self, obj):
        return f"{obj.n_clicks / obj.n_impressions:.2%}" if obj.n_impressions else "-"

    @admin.display(description="predicted CTR", ordering="mean_pctr")
    def predicted_ctr(self, obj):
        return f"{obj.mean_pctr:.2%}" if obj.mean_pctr is not None else "-"

    @admin.display(description="spend (all days)", ordering="total_spend")
    def spend(self, obj):
        return obj.total_spend or 0


@admin.register(Ad)
class AdAdmin(admin.ModelAdmin):
    list_display = ["title", "campaign", "landing_product", "active", "updated_at"]
    list_filter = ["active", "campaign__advertiser"]
    search_fields = ["title", "text", "campaign__name"]
    raw_id_fields = ["landing_product"]


@admin.register(AdSlot)
class AdSlotAdmin(admin.ModelAdmin):
    list_display = ["name", "reserve_price", "max_ads", "active"]
    list_filter = ["active"]
    search_fields = ["name"]


@admin.register(ServedImpression)
class ServedImpressionAdmin(admin.ModelAdmin):
    list_display = ["served_at", "ad", "slot", "position", "pctr", "price", "clicked_at", "charged", "model_name"]
    list_filter = ["slot", "campaign__advertiser", ("clicked_at", admin.EmptyFieldListFilter), "model_name"]
    search_fields = ["token", "ad__title"]
    readonly_fields = [f.name for f in ServedImpression._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False


@admin.register(CampaignSpend)
class CampaignSpendAdmin(admin.ModelAdmin):
    list_display = ["campaign", "day", "amount", "clicks"]
    list_filter = ["day"]
    search_fields = ["campaign__name"]
    readonly_fields = ["campaign", "day", "amount", "clicks"]

    def has_add_permission(self, request):
        return False


@admin.register(CtrModelVersion)
class CtrModelVersionAdmin(TrainedModelAdmin):
    extra_columns = ["backbone_version"]
