"""Admin: alert rules (validated: a known metric, a bound where the comparison needs one), the alerts
they raised, and the aggregated metric values (read only)."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from monitoring import metrics
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
        fields = "__all__"


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
    list_display = ["fired_at", "rule", "state", "value", "last_value", "count", "resolved_at"]
    list_filter = ["state", "rule", "fired_at"]
    list_select_related = ["rule"]
    search_fields = ["rule__name", "message"]
    date_hierarchy = "fired_at"
