"""URLs of the search app under /api/v1/; its endpoints arrive with the search issue."""

urlpatterns: list = []
