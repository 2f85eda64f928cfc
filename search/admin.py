from django.contrib import admin

from search.models import JudgedQuery, RelevanceLabel


@admin.register(JudgedQuery)
class JudgedQueryAdmin(admin.ModelAdmin):
    list_display = ["external_id", "text", "dataset"]
    list_filter = ["dataset"]
    search_fields = ["external_id", "text"]


@admin.register(RelevanceLabel)
class RelevanceLabelAdmin(admin.ModelAdmin):
    list_display = ["query", "product", "relevance"]
    list_filter = ["relevance"]
    search_fields = ["query__text", "product__title", "product__sku"]
    raw_id_fields = ["query", "product"]
    list_select_related = ["query", "product"]
    show_full_result_count = False
