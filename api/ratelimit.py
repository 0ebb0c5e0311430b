"""Rate limits for the API: per API key for authenticated calls, per client address for public ones (verify,
soft-binding resolution), in fixed one-minute windows.

With `HALLMARK_REDIS_URL` set the counters live in Redis (INCR + EXPIRE), so every API process behind a load
balancer shares them; without it each process counts for itself, which is right for a single server. A limiter
that cannot reach Redis lets requests through and logs it: rate limiting protects capacity, it is not a consent or
provenance check, so it must not take the service down with it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("hallmark.ratelimit")

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # seconds until the window resets


class Counter(Protocol):
    def hit(self, key: str, window: int) -> int:
        """Count one request for `key` in the current window and return the window's count so far."""


class MemoryCounter:
    """Per-process counters (the default: one server, no Redis)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._window = -1
        self._lock = threading.Lock()

    def hit(self, key: str, window: int) -> int:
        with self._lock:
            if window != self._window:  # a new window: old counts can never matter again
                self._counts.clear()
                self._window = window
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]


class RedisCounter:
    """Counters shared by every process through Redis."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def hit(self, key: str, window: int) -> int:
        name = f"hallmark:rl:{window}:{key}"
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, WINDOW_SECONDS * 2)
        count, _ = pipe.execute()
        return int(count)


class RateLimiter:
    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    def check(self, key: str, limit: int, *, now: float | None = None) -> Verdict:
        now = time.time() if now is None else now
        window = int(now // WINDOW_SECONDS)
        retry_after = int((window + 1) * WINDOW_SECONDS - now) + 1
        try:
            count = self.counter.hit(key, window)
        except Exception as exc:  # a limiter outage must not become an API outage
            log.warning("rate limiter unavailable, letting the request through: %s", exc)
            return Verdict(True, limit, limit, retry_after)
        return Verdict(count <= limit, limit, max(0, limit - count), retry_after)


def make_limiter(redis_url: str | None) -> RateLimiter:
    return RateLimiter(RedisCounter(redis_url) if redis_url else MemoryCounter())
