from django.urls import include, path
from rest_framework.routers import DefaultRouter

from catalog import views

router = DefaultRouter(trailing_slash=False)
router.register("products", views.ProductViewSet, basename="product")

urlpatterns = [
    path("events", views.EventIngestView.as_view(), name="event-ingest"),
    path("", include(router.urls)),
]
