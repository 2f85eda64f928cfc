"""Admin of the recommend app: trained models with their metrics over time, repeat policies,
and a page per customer showing their history beside what they are recommended and why."""

from __future__ import annotations

from django.contrib import admin, messages
from django.template.response import TemplateResponse

from backbone.admin import TrainedModelAdmin
from backbone.services import TrainingError, start_training_job
from catalog.models import Event
from recommend import services
from recommend.models import CustomerPreview, RecommenderModel, RepeatPolicy


@admin.register(RecommenderModel)
class RecommenderModelAdmin(TrainedModelAdmin):
    """Trained recommenders: the shared page shape (activate, roll back), plus a retrain action."""

    extra_columns = ["n_customers", "n_items", "n_events"]
    actions = ["activate", "roll_back", "retrain"]

    @admin.action(description="Train a new recommender from the current events (a training job)")
    def retrain(self, request, queryset):
        try:
            job = start_training_job(apps=["recommend"], user=request.user)
        except TrainingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"Training job #{job.pk} queued; follow it under Training jobs.")


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
