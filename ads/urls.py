"""URLs of the ads app under /api/v1/; its endpoints arrive with the ads issue."""

urlpatterns: list = []
