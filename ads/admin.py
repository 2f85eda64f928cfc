from django.contrib import admin

from ads.models import AdImpression


@admin.register(AdImpression)
class AdImpressionAdmin(admin.ModelAdmin):
    list_display = ["external_id", "dataset", "clicked", "created_at"]
    list_filter = ["dataset", "clicked"]
    search_fields = ["external_id"]
    show_full_result_count = False
