"""URLs of the search app, mounted at /api/v1/: ``search`` (as the issue names it), ``search/suggest``, ``search/clicks``."""

from django.urls import path

from search import views

urlpatterns = [
    path("search", views.SearchView.as_view(), name="search"),
    path("search/suggest", views.SuggestView.as_view(), name="search-suggest"),
    path("search/clicks", views.SearchClickView.as_view(), name="search-click"),
]
