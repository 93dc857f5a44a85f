"""The rate limits' in-memory storage of a single instance, without a thread per hit.

``limits``' ``MemoryStorage`` forgets expired counters from a ``threading.Timer`` that it
starts again, 10 ms later, whenever a counter moves and the previous timer has finished: in a
crowd of sign-ins that is a new thread for nearly every counted request, and each timer walks
every key. Counters are already checked for expiry when read, so the sweep only frees memory:
here it runs inline, at most once per ``SWEEP_SECONDS``, in whichever request gets there first.

Registered as the ``portal-memory://`` storage scheme (``RATELIMIT_STORAGE_URI`` without
``REDIS_URL``). Everything else, including what the counters mean, is ``MemoryStorage``'s.
"""

from __future__ import annotations

import time

from limits.storage import MemoryStorage

SCHEME = "portal-memory"


class SweepingMemoryStorage(MemoryStorage):
    """``MemoryStorage`` whose expired counters are swept inline instead of by timer threads."""

    STORAGE_SCHEME = [SCHEME]
    #: The longest an expired counter may stay in memory before a counted request sweeps it.
    SWEEP_SECONDS = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str):
        self._next_sweep = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    # MemoryStorage calls this (name-mangled) after each hit: sweep now and then, inline.
    def _MemoryStorage__schedule_expiry(self) -> None:
        moment = time.monotonic()
        if moment < self._next_sweep:
            return
        self._next_sweep = moment + self.SWEEP_SECONDS
        self._MemoryStorage__expire_events()  # type: ignore[attr-defined]
