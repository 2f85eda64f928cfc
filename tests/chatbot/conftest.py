"""Chatbot fixtures: a tiny active backbone with a few operator-taught intents; the packaged encoder."""

from __future__ import annotations

import pytest

GREETINGS = ["hello there", "hi", "good morning", "hey, how are you"]
REFUNDS = ["I want my money back", "refund my order please", "how do I get a refund", "return and refund"]
OPENING_HOURS = [
    "when are you open",
    "what are your opening hours",
    "are you open on sundays",
    "what time do you close today",
    "opening times please",
    "is the shop open on bank holidays",
    "until when are you open tonight",
    "what time does the store open tomorrow",
    "are you open late on thursdays",
    "store hours?",
]


@pytest.fixture
def taught_intents(tiny_active_version):
    """Two intents taught from examples: served as prototypes by the tiny random backbone."""
    from chatbot import services

    greeting = services.teach_intent(name="greeting", examples=GREETINGS, answer="Hello! How can I help?")
    refund = services.teach_intent(name="refund", examples=REFUNDS, answer="Refunds take 5 days.", hand_off=True)
    return greeting, refund


@pytest.fixture
def packaged_version(db):
    """The packaged encoder (MiniLM) as the active backbone version, as on a fresh platform."""
    from backbone import services as backbone_services
    from chatbot import services

    backbone_services.reset_caches()
    services.reset_caches()
    yield backbone_services.get_active_version()
    backbone_services.reset_caches()
    services.reset_caches()
