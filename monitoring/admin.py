"""Admin: alert rules (validated: a known metric, a bound where the comparison needs one), the alerts
they raised, the aggregated metric values (read only) and the dashboards drawn from them."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from backbone import experiments as ab
from backbone.models import Experiment
from monitoring import dashboard, metrics
from monitoring.experiments import report
from monitoring.models import Alert, AlertRule, MetricValue


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(MetricValue)
class MetricValueAdmin(ReadOnlyAdmin):
    list_display = ["start", "granularity", "metric", "version", "dimension", "value", "count"]
    list_filter = ["granularity", "metric", "version", "start"]
    search_fields = ["metric", "dimension"]
    date_hierarchy = "start"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("dashboard/", view(self.dashboard_index), name="monitoring_dashboard"),
            path("dashboard/<slug:app>/", view(self.dashboard_app), name="monitoring_dashboard_app"),
            *super().get_urls(),
        ]

    def dashboard_index(self, request):
        """The dashboards' index: the apps, and the backbone's versions and training loss."""
        self.check_view_permission(request)
        data = dashboard.index_page()
        return self.render_dashboard(request, "admin/monitoring/dashboard_index.html", "Monitoring dashboards", data)

    def dashboard_app(self, request, app: str):
        """An app's dashboard over ``?range=`` (48h, the default, or 30d; anything else is a 400)."""
        self.check_view_permission(request)
        if app not in dashboard.APPS:
            raise Http404(f"No dashboard for {app!r}.")
        range_key = request.GET.get("range", dashboard.DEFAULT_RANGE)
        if range_key not in dashboard.RANGES:
            return HttpResponseBadRequest(f"range must be one of {', '.join(dashboard.RANGES)}")
        data = {**dashboard.app_page(app, range_key, timezone.now()), "app": app}
        title = f"{dashboard.APPS[app].title} dashboard"
        return self.render_dashboard(request, "admin/monitoring/dashboard.html", title, data)

    def check_view_permission(self, request) -> None:
        """PermissionDenied unless the user may view metric values."""
        if not self.has_view_permission(request):
            raise PermissionDenied

    def render_dashboard(self, request, template: str, title: str, data: dict) -> TemplateResponse:
        """A dashboard page in the admin's frame; its non-empty ``data["charts"]`` also go to the script as JSON."""
        chart_data = {c["id"]: c for c in data["charts"] if not c["empty"]}
        pages = [(key, page.title) for key, page in dashboard.APPS.items()]
        context = {"title": title, "opts": self.opts, "pages": pages, "chart_data": chart_data}
        return TemplateResponse(request, template, {**self.admin_site.each_context(request), **data, **context})


class AlertInline(admin.TabularInline):
    model = Alert
    fields = ["state", "value", "last_value", "count", "fired_at", "resolved_at", "notified"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    ordering = ["-fired_at"]
    show_change_link = True


class AlertRuleForm(forms.ModelForm):
    metric = forms.ChoiceField(choices=metrics.choices)
    webhook_url = forms.URLField(required=False, assume_scheme="https", help_text=AlertRule.webhook_url.field.help_text)

    class Meta:
        model = AlertRule
        fields = ["name", "metric", "version", "dimension", "comparison", "threshold", "upper", "window_minutes",
                  "min_count", "emails", "webhook_url", "active"]  # fmt: skip


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = ["name", "condition", "active", "firing"]
    list_filter = ["active", "metric", "window_minutes"]
    search_fields = ["name", "metric"]
    inlines = [AlertInline]

    @admin.display(boolean=True)
    def firing(self, rule: AlertRule) -> bool:
        return rule.alerts.filter(state=Alert.State.FIRING).exists()


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["fired_at", "title", "state", "value", "last_value", "count", "resolved_at"]
    list_filter = ["state", "rule", "fired_at"]
    list_select_related = ["rule"]
    search_fields = ["title", "message"]
    date_hierarchy = "fired_at"
    actions = ["resolve"]

    @admin.action(description="Resolve the selected alerts (a rule still breached fires again)")
    def resolve(self, request, queryset):
        count = queryset.filter(state=Alert.State.FIRING).update(state=Alert.State.RESOLVED, resolved_at=timezone.now())
        self.message_user(request, f"{count} alert(s) resolved.", messages.SUCCESS)

    def has_resolve_permission(self, request) -> bool:
        return request.user.has_perm("monitoring.change_alert")  # the page itself is read only


class ExperimentForm(forms.ModelForm):
    """A new A/B test, validated by ``backbone.experiments.validate`` (which also records the control)."""

    class Meta:
        model = Experiment
        fields = ["app", "challenger", "share"]

    def clean(self):
        cleaned = super().clean()
        if not self.errors and self.instance.pk is None:  # a started test's page edits nothing
            ab.validate(self.instance_with(cleaned))  # a ValidationError per field becomes the form's errors
        return cleaned

    def instance_with(self, cleaned: dict) -> Experiment:
        for name in self.Meta.fields:
            setattr(self.instance, name, cleaned[name])
        return self.instance


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    """A/B tests: start one with a challenger row and a share; watch each arm's rate with its 95%
    interval; promote the challenger or stop in one click (actions, or the buttons of its page)."""

    form = ExperimentForm
    list_display = ["app", "control", "challenger", "share", "started_at", "ended_at", "winner", "arms"]
    list_filter = ["app", "winner"]
    actions = ["promote", "stop"]

    def get_fields(self, request, obj=None):
        return (
            ["app", "challenger", "share"]
            if obj is None
            else ["app", "control", "challenger", "share", "started_at", "ended_at", "winner", "arms"]
        )

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    @admin.display(description="arms (rate, 95% interval, n)")
    def arms(self, experiment: Experiment) -> str:
        result = report(experiment)
        parts = [
            f"{a['arm']} {a['model']}: "
            + ("no data" if a["rate"] is None else f"{a['rate']:.4f} [{a['low']:.4f}, {a['high']:.4f}] n={a['n']:,}")
            for a in result["arms"]
        ]
        if result["difference"]:
            d = result["difference"]
            parts.append(f"B-A {d['value']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]")
        return f"{result['metric']}: " + "; ".join(parts)

    def response_change(self, request, obj):
        """The page's two buttons: promote the challenger, or stop and keep the control."""
        for button, promote in (("_promote", True), ("_stop", False)):
            if button in request.POST:
                self._end(request, Experiment.objects.filter(pk=obj.pk), promote=promote)
                return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    @admin.action(description="Promote the challenger (B) to serve everyone, ending the test")
    def promote(self, request, queryset):
        self._end(request, queryset, promote=True)

    @admin.action(description="Stop the test, keeping the control (A)")
    def stop(self, request, queryset):
        self._end(request, queryset, promote=False)

    def _end(self, request, queryset, *, promote: bool) -> None:
        for experiment in queryset.filter(ended_at__isnull=True):
            try:
                ab.end(experiment, promote=promote)
            except ValidationError as exc:
                self.message_user(request, f"{experiment}: {exc.messages[0]}", messages.ERROR)
                continue
            self.message_user(request, f"{experiment}: {experiment.get_winner_display()}.", messages.SUCCESS)
