"""Chatbot fixtures: a tiny active backbone with a few operator-taught intents."""

from __future__ import annotations

import pytest

GREETINGS = ["hello there", "hi", "good morning", "hey, how are you"]
REFUNDS = ["I want my money back", "refund my order please", "how do I get a refund", "return and refund"]


@pytest.fixture
def taught_intents(tiny_active_version):
    """Two intents taught from examples: served as prototypes by the tiny random backbone."""
    from chatbot import services

    greeting = services.teach_intent(name="greeting", examples=GREETINGS, answer="Hello! How can I help?")
    refund = services.teach_intent(name="refund", examples=REFUNDS, answer="Refunds take 5 days.", hand_off=True)
    return greeting, refund
