"""Chat API: answer a shopper's message (storefront key); teach an intent from examples (staff)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.auth import PublicAccess
from catalog.models import StorefrontKey
from chatbot import services
from chatbot.serializers import (
    ChatMessageRequestSerializer,
    ChatMessageResponseSerializer,
    TeachIntentRequestSerializer,
    TeachIntentResponseSerializer,
)


class MessageView(APIView):
    """Classify a message: intent, calibrated confidence, alternatives, answer, hand-off."""

    permission_classes = [PublicAccess]

    @extend_schema(request=ChatMessageRequestSerializer, responses={200: ChatMessageResponseSerializer})
    def post(self, request):
        serializer = ChatMessageRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.auth if isinstance(request.auth, StorefrontKey) else None
        reply = services.answer_message(**serializer.validated_data, storefront_key=key)
        return Response(ChatMessageResponseSerializer(reply).data)


class TeachIntentView(APIView):
    """Create or extend an intent from a few examples; it answers at once (prototype), no retraining."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(request=TeachIntentRequestSerializer, responses={201: TeachIntentResponseSerializer})
    def post(self, request):
        serializer = TeachIntentRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        intent = services.teach_intent(**serializer.validated_data)
        data = {"id": intent.pk, "name": intent.name, "examples": intent.examples.count()}
        return Response(TeachIntentResponseSerializer(data).data, status=status.HTTP_201_CREATED)
