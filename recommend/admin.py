"""Admin of the recommend app: trained models with their metrics over time, repeat policies,
and a page per customer showing their history beside what they are recommended and why."""

from __future__ import annotations

from django.contrib import admin, messages
from django.template.response import TemplateResponse

from catalog.models import Event
from recommend import services
from recommend.models import CustomerPreview, RecommenderModel, RepeatPolicy


@admin.register(RecommenderModel)
class RecommenderModelAdmin(admin.ModelAdmin):
    list_display = ["name", "state", "ndcg", "hit_rate", "coverage", "n_customers", "n_items", "created_at"]
    list_filter = ["state", "kind", "created_at"]
    search_fields = ["name"]
    date_hierarchy = "created_at"
    actions = ["activate", "train_new"]
    readonly_fields = [f.name for f in RecommenderModel._meta.fields]

    def has_add_permission(self, request):
        return False  # models come from training runs: use the "train a new model" action

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="NDCG@10")
    def ndcg(self, obj):
        return obj.metric("ndcg@10")

    @admin.display(description="HR@10")
    def hit_rate(self, obj):
        return obj.metric("hr@10")

    @admin.display(description="coverage")
    def coverage(self, obj):
        return obj.metric("coverage")

    @admin.action(description="Activate (serve this model)")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model.", messages.ERROR)
            return
        try:
            row = services.activate_model(model_id=queryset.get().pk)
        except services.RecommendError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{row.name} now serves.")

    @admin.action(description="Train a new model from the current events (background job)")
    def train_new(self, request, queryset):
        row = services.start_training()
        self.message_user(request, f"{row.name} queued for training.")


@admin.register(RepeatPolicy)
class RepeatPolicyAdmin(admin.ModelAdmin):
    list_display = ["category_path", "allow_repeats", "note"]
    list_filter = ["allow_repeats"]
    search_fields = ["category_path", "note"]


@admin.register(CustomerPreview)
class CustomerPreviewAdmin(admin.ModelAdmin):
    list_display = ["external_id", "created_at"]
    search_fields = ["external_id"]
    list_filter = ["created_at"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        customer = self.get_object(request, object_id)
        if customer is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        result = services.recommend_for_customer(external_id=customer.external_id, k=20)
        served = services.served_model()
        context = {
            **self.admin_site.each_context(request),
            "title": f"Recommendations for {customer.external_id}",
            "customer": customer,
            "events": Event.objects.filter(customer=customer).select_related("product")[:50],
            "items": result["items"],
            "fallback": result["fallback"],
            "model_name": served.row.name if served else None,
            "opts": self.opts,
        }
        return TemplateResponse(request, "admin/recommend/preview.html", context)
