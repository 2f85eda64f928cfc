from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from backbone import registry, services
from backbone.models import ModelVersion, TrainingJob


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "state", "tasks", "activation_progress", "created_at", "activated_at"]
    list_filter = ["state", "created_at"]
    search_fields = ["name"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]
    actions = ["activate"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Versions are written by training jobs; their pages are read-only. Activate with the action.
        return obj is None and super().has_change_permission(request, obj)

    @admin.action(description="Activate (re-embed in the background, then switch)")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        version = services.activate_version(version_id=queryset.get().pk)
        self.message_user(request, f"{version.name}: re-embedding started; it serves once complete.")


class TrainingJobForm(forms.ModelForm):
    tasks = forms.MultipleChoiceField(choices=[], help_text="Task heads trained together on the shared backbone.")
    epochs = forms.FloatField(initial=1.0, min_value=0.01, max_value=50)
    batch_size = forms.IntegerField(initial=32, min_value=2, max_value=512)
    max_examples = forms.IntegerField(required=False, min_value=10, help_text="Cap per task (blank: all).")
    intent_dataset = forms.CharField(
        required=False, help_text="Intents task: only this dataset's intents (e.g. banking77)."
    )
    activate = forms.BooleanField(required=False, help_text="Activate the new version when training succeeds.")

    class Meta:
        model = TrainingJob
        fields = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tasks"].choices = [(name, name) for name in sorted(registry.TASK_FACTORIES)]


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "progress_bar", "result_version", "created_at", "finished_at"]
    list_filter = ["status", "kind", "created_at"]
    actions = ["cancel"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = TrainingJobForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tasks", "epochs", "batch_size", "max_examples", "intent_dataset", "activate"]
        return self.get_readonly_fields(request, obj)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [
            "kind",
            "status",
            "progress_bar",
            "parameters",
            "metrics",
            "error",
            "log",
            "worker",
            "result_version",
            "created_by",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]

    def has_change_permission(self, request, obj=None):
        # A job is never edited: its page is read-only (Django's view page, refreshed while it runs).
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="progress")
    def progress_bar(self, obj):
        pct = round(obj.progress * 100)
        return format_html('<progress value="{}" max="100"></progress> {}%', pct, pct)

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        fields = ("epochs", "batch_size", "max_examples", "intent_dataset", "activate")
        params = {k: data[k] for k in fields if data.get(k) not in (None, "")}
        job = services.start_training_job(tasks=data["tasks"], parameters=params, user=request.user)
        obj.pk = job.pk
        obj.status = job.status

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if job is not None and not job.is_finished:
            # Refresh the page while the job runs, so progress and log move on their own.
            extra_context["refresh_seconds"] = 3
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Cancel selected queued/running jobs")
    def cancel(self, request, queryset):
        cancelled = sum(services.cancel_training_job(job_id=pk) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"Cancelled {cancelled} job(s).")
