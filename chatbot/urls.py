"""URLs of the chatbot app, mounted at /api/v1/chat/."""

from django.urls import path

from chatbot.views import MessageView, TeachIntentView

urlpatterns = [
    path("messages", MessageView.as_view(), name="chat-messages"),
    path("intents", TeachIntentView.as_view(), name="chat-teach-intent"),
]
