"""Admin of the backbone: the one page shape of every trained artifact, training jobs, retraining schedules."""

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from backbone import jobs, lifecycle, registry, services
from backbone.models import ModelVersion, RetrainingSchedule, TrainingJob


class TrainedModelAdmin(admin.ModelAdmin):
    """The page shape every trained artifact shares (backbone versions, rankers, recommenders, pCTR models).

    Rows are written by training jobs, so pages are read-only; operators activate a chosen row or
    roll the app back to the row that served before. Apps subclass it and add columns in ``extra_columns``.
    """

    extra_columns: list[str] = []
    list_filter = ["state", "created_at"]
    search_fields = ["name"]
    actions = ["activate", "roll_back"]

    def get_list_display(self, request):
        return ["name", "state", *self.extra_columns, "training_job", "created_at", "activated_at"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def activate_row(self, row):
        """Serve ``row`` (subclasses with a slower switch override it)."""
        return lifecycle.activate(self.model, pk=row.pk)

    def roll_back_model(self):
        """Serve the previous row again."""
        return lifecycle.roll_back(self.model)

    @admin.action(description="Activate the selected version (it serves at once)")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        try:
            row = self.activate_row(queryset.get())
        except lifecycle.LifecycleError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{row.name} is {row.state}.")

    @admin.action(description="Roll back: serve the version that served before the active one")
    def roll_back(self, request, queryset):
        try:
            row = self.roll_back_model()
        except lifecycle.LifecycleError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"rolled back: {row.name} is {row.state}.")


@admin.register(ModelVersion)
class ModelVersionAdmin(TrainedModelAdmin):
    extra_columns = ["tasks", "activation_progress"]

    def activate_row(self, row):
        return services.activate_version(version_id=row.pk)  # re-embeds first if its vectors were pruned

    def roll_back_model(self):
        return services.roll_back_version()


class TrainingJobForm(forms.ModelForm):
    apps = forms.MultipleChoiceField(
        choices=[], required=False, help_text="Apps to train (none chosen: every app with data), as manage.py train."
    )
    tasks = forms.MultipleChoiceField(
        choices=[], required=False, help_text="Advanced: the backbone tasks of the fine-tune (default: the apps' own)."
    )
    epochs = forms.FloatField(required=False, min_value=0.01, max_value=50)
    batch_size = forms.IntegerField(required=False, min_value=2, max_value=512)
    max_examples = forms.IntegerField(required=False, min_value=10, help_text="Cap per task (blank: all).")
    intent_dataset = forms.CharField(
        required=False, help_text="Intents task: only this dataset's intents (e.g. banking77)."
    )
    activate = forms.BooleanField(
        required=False, initial=True, help_text="Serve the new models as soon as they are trained."
    )

    class Meta:
        model = TrainingJob
        fields = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["apps"].choices = [(name, name) for name in sorted(registry.APP_TRAINERS)]
        self.fields["tasks"].choices = [(name, name) for name in sorted(registry.TASK_FACTORIES)]


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "apps", "status", "progress_bar", "last_line", "result_version", "created_at", "finished_at"]
    list_filter = ["status", "created_at"]
    actions = ["cancel"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = TrainingJobForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["apps", "tasks", "epochs", "batch_size", "max_examples", "intent_dataset", "activate"]
        return self.get_readonly_fields(request, obj)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [
            "apps",
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

    @admin.display(description="apps")
    def apps(self, obj):
        return ", ".join(obj.parameters.get("apps") or []) or "all with data"

    @admin.display(description="now")
    def last_line(self, obj):
        return obj.log.rstrip().rsplit("\n", 1)[-1][9:89] if obj.log else ""

    @admin.display(description="progress")
    def progress_bar(self, obj):
        pct = round(obj.progress * 100)
        return format_html('<progress value="{}" max="100"></progress> {}%', pct, pct)

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        fields = ("epochs", "batch_size", "max_examples", "intent_dataset")
        params = {k: data[k] for k in fields if data.get(k) not in (None, "")}
        params["activate"] = bool(data.get("activate"))
        job = services.start_training_job(
            apps=data["apps"] or None, tasks=data["tasks"] or None, parameters=params, user=request.user
        )
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
        cancelled = sum(jobs.cancel_training_job(job_id=pk) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"Cancelled {cancelled} job(s).")


class RetrainingScheduleForm(forms.ModelForm):
    app = forms.ChoiceField(choices=lambda: [(app, app) for app in sorted(registry.APP_TRAINERS)])

    class Meta:
        model = RetrainingSchedule
        fields = ["app", "cron", "enabled", "tolerance"]


@admin.register(RetrainingSchedule)
class RetrainingScheduleAdmin(admin.ModelAdmin):
    """Per app, when it retrains on its own (django-celery-beat runs it); a run activates only what
    validates at least as well as what serves, and its training job says which way it went."""

    form = RetrainingScheduleForm
    list_display = ["app", "cron", "enabled", "tolerance", "last_run"]
    list_filter = ["enabled"]

    @admin.display(description="last scheduled run")
    def last_run(self, schedule: RetrainingSchedule) -> str:
        job = TrainingJob.objects.filter(parameters__gate=True, parameters__apps=[schedule.app]).first()
        if job is None:
            return "-"
        gate = job.metrics.get("gate", {})
        outcome = {True: "activated", False: "kept what serves"}.get(gate.get("promoted"), job.status)
        return format_html('<a href="../trainingjob/{}/change/">#{}</a> {}', job.pk, job.pk, outcome)
