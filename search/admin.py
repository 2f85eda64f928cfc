from django.contrib import admin

from backbone.admin import TrainedModelAdmin
from search import services
from search.models import JudgedQuery, RelevanceLabel, SearchClick, SearchQueryLog, SearchRanker


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


class ZeroResultFilter(admin.SimpleListFilter):
    title = "results"
    parameter_name = "results"

    def lookups(self, request, model_admin):
        return [("zero", "No results"), ("some", "Some results")]

    def queryset(self, request, queryset):
        if self.value() == "zero":
            return queryset.filter(result_count=0)
        if self.value() == "some":
            return queryset.filter(result_count__gt=0)
        return queryset


@admin.register(SearchQueryLog)
class SearchQueryLogAdmin(admin.ModelAdmin):
    """Every storefront search; the list page also shows top queries, zero-result queries and CTR."""

    list_display = ["created_at", "text", "corrected", "result_count", "ranker", "sort", "page", "latency_ms"]
    list_filter = [ZeroResultFilter, "ranker", "sort", "model_version", "created_at"]
    search_fields = ["text", "normalized"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in SearchQueryLog._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "analytics": services.search_analytics(limit=15)}
        return super().changelist_view(request, extra_context=extra_context)


@admin.register(SearchClick)
class SearchClickAdmin(admin.ModelAdmin):
    list_display = ["created_at", "query", "product", "position"]
    list_filter = ["position", "created_at"]
    search_fields = ["query__text", "product__sku", "product__title"]
    raw_id_fields = ["query", "product"]
    list_select_related = ["query", "product"]


@admin.register(SearchRanker)
class SearchRankerAdmin(TrainedModelAdmin):
    """Learned rankers: each serves only while its backbone version is the active one."""

    extra_columns = ["backbone_version"]
    list_select_related = ["backbone_version", "training_job"]
