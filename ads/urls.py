"""URLs of the ads app under /api/v1/ads/."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from ads import views

router = DefaultRouter(trailing_slash=False)
router.register("advertisers", views.AdvertiserViewSet, basename="ad-advertiser")
router.register("campaigns", views.CampaignViewSet, basename="ad-campaign")
router.register("creatives", views.AdViewSet, basename="ad-creative")
router.register("slots", views.AdSlotViewSet, basename="ad-slot")

urlpatterns = [
    path("select", views.AdSelectView.as_view(), name="ads-select"),
    path("clicks", views.AdClickView.as_view(), name="ads-click"),
    path("train", views.AdTrainView.as_view(), name="ads-train"),
    path("", include(router.urls)),
]
