"""Request and response serializers of the chat API."""

from __future__ import annotations

import unicodedata

from rest_framework import serializers

MAX_MESSAGE_CHARS = 1000


def reject_control_characters(value: str) -> str:
    """Refuse NUL and other control characters (binary junk); newlines and tabs are fine."""
    bad = {ch for ch in value if unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\n\r\t"}
    if bad:
        raise serializers.ValidationError("Text contains control characters; send plain text.")
    return value


class ChatMessageRequestSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=MAX_MESSAGE_CHARS, validators=[reject_control_characters])
    session = serializers.CharField(max_length=100, validators=[reject_control_characters])


class ChatAlternativeSerializer(serializers.Serializer):
    intent = serializers.CharField()
    confidence = serializers.FloatField()


class ChatMessageResponseSerializer(serializers.Serializer):
    message_id = serializers.IntegerField()
    intent = serializers.CharField(allow_null=True, help_text="Null when the message is out of scope.")
    confidence = serializers.FloatField(help_text="Calibrated probability of the top intent.")
    alternatives = ChatAlternativeSerializer(many=True, help_text="The next most likely intents (up to 3).")
    outcome = serializers.ChoiceField(choices=["answered", "clarify", "out_of_scope"])
    answer = serializers.CharField()
    hand_off = serializers.BooleanField()
    version = serializers.CharField(help_text="Backbone version that classified the message.")


class TeachIntentRequestSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    examples = serializers.ListField(
        child=serializers.CharField(max_length=MAX_MESSAGE_CHARS, validators=[reject_control_characters]),
        min_length=1,
        max_length=500,
    )
    answer = serializers.CharField(required=False, allow_blank=True, default="")
    hand_off = serializers.BooleanField(required=False, default=False)


class TeachIntentResponseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    examples = serializers.IntegerField()
