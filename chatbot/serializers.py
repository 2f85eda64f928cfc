"""Request and response serializers of the chat API."""

from __future__ import annotations

from django.core.validators import RegexValidator
from rest_framework import serializers

from catalog.serializers import JSONTypesMixin
from config.schema import WHITESPACE

MAX_MESSAGE_CHARS = 1000
CONTROL = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"  # category Cc but newlines and tabs


class PlainText(RegexValidator):
    """Refuse control characters (binary junk) and unpaired surrogates; newlines and tabs are fine.

    The pattern (the schema documents it) also asks for one visible character, as DRF's blank check does."""

    regex = rf"^[^{CONTROL}]*[^{CONTROL}{WHITESPACE}][^{CONTROL}]*\Z"
    message = "Text contains control characters; send plain text."

    def __call__(self, value):
        super().__call__(value)
        if any("\ud800" <= ch <= "\udfff" for ch in str(value)):  # not encodable as UTF-8
            raise serializers.ValidationError(self.message)


plain_text = PlainText()


class ChatMessageRequestSerializer(JSONTypesMixin, serializers.Serializer):
    text = serializers.CharField(max_length=MAX_MESSAGE_CHARS, validators=[plain_text])
    session = serializers.CharField(max_length=100, validators=[plain_text])


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


class TeachIntentRequestSerializer(JSONTypesMixin, serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    examples = serializers.ListField(
        child=serializers.CharField(max_length=MAX_MESSAGE_CHARS, validators=[plain_text]),
        min_length=1,
        max_length=500,
    )
    answer = serializers.CharField(required=False, allow_blank=True, default="")
    hand_off = serializers.BooleanField(required=False, default=False)


class TeachIntentResponseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    examples = serializers.IntegerField()
