"""Rate limits: the fixed-window counter in memory and in a real Redis (127.0.0.1:6379), failing open when Redis is
unreachable, and the 429 problem answers on the public verify/resolution endpoints and on generation requests."""

from __future__ import annotations

import uuid

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from api.ratelimit import WINDOW_SECONDS, MemoryCounter, RateLimiter, RedisCounter, make_limiter
from tests.conftest import generation_count

REDIS_URL = "redis://127.0.0.1:6379/0"
PROBLEM = "application/problem+json"


def _window_start() -> float:
    return 1_000_000 * WINDOW_SECONDS  # a fixed window boundary: tests do not depend on the clock


def _exercise(limiter: RateLimiter, key: str) -> None:
    start = _window_start()
    verdicts = [limiter.check(key, 3, now=start + 10) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert verdicts[-1].retry_after == 51  # 50 s left in the window, rounded up
    assert limiter.check(f"{key}-other", 3, now=start + 10).allowed, "keys are counted apart"
    assert limiter.check(key, 3, now=start + WINDOW_SECONDS).allowed, "a new window starts afresh"


def test_memory_counter_limits_per_key_and_window() -> None:
    _exercise(RateLimiter(MemoryCounter()), "ip:198.51.100.7")


def test_redis_counter_limits_per_key_and_window_and_is_shared() -> None:
    key = f"ip:test-{uuid.uuid4().hex}"
    limiter = make_limiter(REDIS_URL)
    assert isinstance(limiter.counter, RedisCounter)
    _exercise(limiter, key)
    # A second process (a second limiter) sees the same counts: that is the point of Redis.
    assert not make_limiter(REDIS_URL).check(key, 3, now=_window_start() + 20).allowed
    ttl = redis.Redis.from_url(REDIS_URL).ttl(f"hallmark:rl:{int(_window_start() // WINDOW_SECONDS)}:{key}")
    assert 0 < ttl <= 2 * WINDOW_SECONDS, "counters expire on their own"


def test_unreachable_redis_lets_requests_through(caplog: pytest.LogCaptureFixture) -> None:
    limiter = make_limiter("redis://127.0.0.1:1/0")  # nothing listens on port 1
    verdict = limiter.check("ip:203.0.113.9", 1)
    assert verdict.allowed and verdict.limit == 1
    assert "rate limiter unavailable" in caplog.text


def test_public_endpoints_answer_429_with_retry_after(sqlite_initialized) -> None:
    settings = sqlite_initialized.settings.model_copy(update={"rate_limit_public_per_minute": 2})
    with TestClient(create_app(settings, workers=0)) as client:
        first = client.get("/services/supportedAlgorithms")
        second = client.post("/v1/verify", files={"file": ("x.mp4", b"not a video", "video/mp4")})
        assert first.status_code == 200 and second.status_code == 422
        third = client.get("/services/supportedAlgorithms")
        assert third.status_code == 429 and third.headers["content-type"].startswith(PROBLEM)
        body = third.json()
        assert body["type"] == "urn:hallmark:problem:rate_limited" and "2 per minute" in body["detail"]
        assert 1 <= int(third.headers["Retry-After"]) <= WINDOW_SECONDS + 1
        assert client.get("/healthz").status_code == 200, "other endpoints are not limited by this counter"


def test_generation_requests_are_limited_per_account(sqlite_initialized) -> None:
    settings = sqlite_initialized.settings.model_copy(update={"rate_limit_generations_per_minute": 1})
    headers = {"Authorization": f"Bearer {sqlite_initialized.admin_key}"}
    with TestClient(create_app(settings, workers=0)) as client:
        before = generation_count(sqlite_initialized)
        first = client.post("/v1/generations", json={"prompt": "a lighthouse at dusk"}, headers=headers)
        assert first.status_code == 202, first.text
        second = client.post("/v1/generations", json={"prompt": "a lighthouse at dawn"}, headers=headers)
        assert second.status_code == 429 and "Retry-After" in second.headers
        assert generation_count(sqlite_initialized) == before + 1, "a refused request leaves no record"
        unauthenticated = client.post("/v1/generations", json={"prompt": "x"})
        assert unauthenticated.status_code == 401, "authentication is checked before the limit"
