"""URLs of the chatbot app under /api/v1/; its endpoints arrive with the chatbot issue."""

urlpatterns: list = []
