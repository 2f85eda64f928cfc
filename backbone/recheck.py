"""Per-process copies of small rows that every request reads, re-read at most every few seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Rechecked(Generic[T]):
    """``load(*key)``, kept per key by this process and loaded again at most every ``seconds``.

    A change made in this process is served at once by calling :meth:`forget`; other processes
    see it within ``seconds``. ``load`` runs outside the lock, so a slow read blocks no other key.
    """

    def __init__(self, load: Callable[..., T], seconds: float):
        self.load = load
        self.seconds = seconds
        self._lock = threading.Lock()
        self._values: dict[tuple[Hashable, ...], tuple[float, T]] = {}

    def get(self, *key: Hashable) -> T:
        now = time.monotonic()
        with self._lock:
            cached = self._values.get(key)
        if cached is not None and now - cached[0] < self.seconds:
            return cached[1]
        value = self.load(*key)
        with self._lock:
            self._values[key] = (now, value)
        return value

    def forget(self, *key: Hashable) -> None:
        """Load ``key`` again at its next :meth:`get` (every key when none is given)."""
        with self._lock:
            if key:
                self._values.pop(key, None)
            else:
                self._values.clear()
