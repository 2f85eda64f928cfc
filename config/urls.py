"""URL map: admin, the versioned REST API, its OpenAPI schema and docs, Prometheus' /metrics and the demo storefront."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import HealthView
from monitoring.views import PrometheusView
from storefront.views import demo

api_v1 = [
    path("health", HealthView.as_view(), name="health"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include("catalog.urls")),
    path("", include("backbone.urls")),
    path("", include("search.urls")),
    path("recommend/", include("recommend.urls")),
    path("chat/", include("chatbot.urls")),
    path("ads/", include("ads.urls")),
    path("metrics/", include("monitoring.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("metrics", PrometheusView.as_view(), name="prometheus"),
    path("demo/", demo, name="demo-storefront"),
]

# JSON under /api/, Django's HTML pages elsewhere (config/http_errors.py).
handler400 = "config.http_errors.bad_request"
handler403 = "config.http_errors.permission_denied"
handler404 = "config.http_errors.page_not_found"
handler500 = "config.http_errors.server_error"
