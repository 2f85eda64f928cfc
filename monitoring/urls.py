from django.urls import path

from monitoring import views

urlpatterns = [
    path("definitions", views.MetricDefinitionsView.as_view(), name="metric-definitions"),
    path("values", views.MetricValuesView.as_view(), name="metric-values"),
    path("alerts", views.AlertsView.as_view(), name="alerts"),
    path("experiments", views.ExperimentsView.as_view(), name="experiments"),
]
