"""URLs of the search app, mounted at /api/v1/search/."""

from django.urls import path

from search import views

urlpatterns = [
    path("", views.SearchView.as_view(), name="search"),
    path("suggest", views.SuggestView.as_view(), name="search-suggest"),
    path("clicks", views.SearchClickView.as_view(), name="search-click"),
]
