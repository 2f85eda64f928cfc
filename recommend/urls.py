"""URLs of the recommend app under /api/v1/recommend/."""

from django.urls import path

from recommend import views

urlpatterns = [
    path("customers/<str:customer_id>", views.CustomerRecommendView.as_view(), name="recommend-customer"),
    path("products/<str:sku>/similar", views.SimilarView.as_view(), name="recommend-similar"),
    path("products/<str:sku>/bought-together", views.BoughtTogetherView.as_view(), name="recommend-bought-together"),
    path("popular", views.PopularView.as_view(), name="recommend-popular"),
    path("models", views.ModelsView.as_view(), name="recommend-models"),
]
