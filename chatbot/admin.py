"""Operators' chatbot admin: intents and answers, examples, the review queue, retraining."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from backbone.services import TrainingError, start_training_job
from chatbot import services
from chatbot.models import Conversation, Intent, IntentExample, IntentPrototype, Message


@admin.register(Intent)
class IntentAdmin(admin.ModelAdmin):
    list_display = ["name", "dataset", "domain", "hand_off", "is_out_of_scope"]
    list_filter = ["dataset", "hand_off", "is_out_of_scope", "domain"]
    list_editable = ["hand_off"]
    search_fields = ["name", "answer"]
    actions = ["retrain", "refresh_prototypes"]

    @admin.action(description="Retrain the chatbot on the selected intents' dataset (then activate)")
    def retrain(self, request, queryset):
        """The training job of ``manage.py train chatbot``, on one dataset's intents and the taught ones."""
        datasets = sorted({d for d in queryset.values_list("dataset", flat=True) if d})
        if len(datasets) > 1:
            self.message_user(request, f"Choose intents of one dataset (got {datasets}).", messages.ERROR)
            return
        parameters = services.training_parameters(dataset=datasets[0] if datasets else "")
        try:
            job = start_training_job(apps=["chatbot"], parameters=parameters, user=request.user)
        except TrainingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"Training job #{job.pk} queued; follow it under Training jobs.")

    @admin.action(description="Serve the selected intents now from their examples (prototypes)")
    def refresh_prototypes(self, request, queryset):
        count = services.refresh_prototypes(intent_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} intent prototype(s) refreshed for the active version.")


@admin.register(IntentExample)
class IntentExampleAdmin(admin.ModelAdmin):
    list_display = ["text", "intent", "split", "source", "created_at"]
    list_filter = ["split", "intent__dataset", "source"]
    search_fields = ["text", "intent__name"]
    raw_id_fields = ["intent"]
    list_select_related = ["intent"]
    show_full_result_count = False


@admin.register(IntentPrototype)
class IntentPrototypeAdmin(admin.ModelAdmin):
    list_display = ["intent", "version", "n_examples", "updated_at"]
    list_filter = ["version"]
    search_fields = ["intent__name"]
    readonly_fields = ["intent", "version", "n_examples", "updated_at"]
    exclude = ["embedding"]

    def has_add_permission(self, request):
        return False


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["created_at", "text", "intent", "confidence", "outcome", "answer", "review_status"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["session", "storefront_key", "created_at", "updated_at"]
    search_fields = ["session"]
    inlines = [MessageInline]


class MessageReviewForm(forms.ModelForm):
    """The review: the right intent (empty keeps the predicted one, i.e. confirms it)."""

    class Meta:
        model = Message
        fields = ["reviewed_intent"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """The review queue: filter on review status "pending"; confirm or relabel into training examples."""

    form = MessageReviewForm
    list_display = ["created_at", "text", "intent", "confidence", "outcome", "review_status"]
    list_filter = ["review_status", "outcome", "hand_off", "created_at"]
    search_fields = ["text", "intent__name", "conversation__session"]
    list_select_related = ["intent"]
    readonly_fields = [
        "conversation",
        "text",
        "intent",
        "confidence",
        "alternatives",
        "outcome",
        "answer",
        "hand_off",
        "version",
        "review_status",
        "reviewed_by",
        "reviewed_at",
    ]
    autocomplete_fields = ["reviewed_intent"]
    actions = ["confirm", "dismiss"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        """Saving the review form relabels (or confirms) through the service, never a raw write."""
        chosen = form.cleaned_data.get("reviewed_intent")
        try:
            services.review_message(message_id=obj.pk, intent_id=chosen.pk if chosen else None, user=request.user)
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)

    @admin.action(description="Confirm the predicted intent (becomes a training example)")
    def confirm(self, request, queryset):
        done = 0
        for message in queryset.exclude(intent=None):
            services.review_message(message_id=message.pk, user=request.user)
            done += 1
        self.message_user(request, f"{done} message(s) confirmed as training examples.")

    @admin.action(description="Dismiss (take off the review queue, teach nothing)")
    def dismiss(self, request, queryset):
        count = services.dismiss_messages(message_ids=list(queryset.values_list("pk", flat=True)), user=request.user)
        self.message_user(request, f"{count} message(s) dismissed.")
