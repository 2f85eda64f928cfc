"""URLs of the recommend app under /api/v1/; its endpoints arrive with the recommend issue."""

urlpatterns: list = []
