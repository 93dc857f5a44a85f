"""Where the throttling counters live: Redis shared by every instance, or one app's memory."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from limits import parse_many

from portal import create_app
from portal.config import ConfigError, load_config
from portal.ratelimit_storage import SweepingMemoryStorage
from tests.support.accounts import MEMBER_PASSWORD

#: A Redis database of the test suite's own, flushed around each test.
REDIS_URL = "redis://127.0.0.1:6379/4"
WRONG = "Wrong-Guess-7731"


@pytest.fixture
def redis_db():
    """Return a client of the test Redis database, empty before and after the test."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def app_config(app_config: dict[str, Any], monkeypatch) -> dict[str, Any]:
    """Let the environment choose the storage, as in production."""
    config = dict(app_config)
    config.pop("RATELIMIT_STORAGE_URI")
    monkeypatch.delenv("REDIS_URL", raising=False)
    return config


def lock_out(app, email: str = "member@example.com") -> None:
    items = parse_many(app.config["PORTAL_RATELIMIT_LOGIN_ACCOUNT"])
    allowed = min(items, key=lambda item: item.get_expiry()).amount
    client = app.test_client()
    for _ in range(allowed):
        assert client.post("/login", data={"email": email, "password": WRONG}).status_code == 200


def right_password(app):
    return app.test_client().post(
        "/login", data={"email": "member@example.com", "password": MEMBER_PASSWORD}
    )


def test_two_instances_sharing_redis_throttle_together(app_config, redis_db, member, monkeypatch):
    """A lockout earned on one instance holds on another instance using the same Redis."""
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    first = create_app(app_config)
    assert first.config["RATELIMIT_STORAGE_URI"] == REDIS_URL
    lock_out(first)
    assert redis_db.dbsize() > 0

    second = create_app(app_config)
    resp = right_password(second)
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) > 0


def test_route_limits_are_shared_through_redis_too(app_config, redis_db, monkeypatch):
    """The per-address SSO callback limit counts requests made to every instance."""
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    items = parse_many(load_config("/tmp")["PORTAL_RATELIMIT_SSO_CALLBACK"])
    allowed = min(items, key=lambda item: item.get_expiry()).amount
    first = create_app(app_config)
    for _ in range(allowed):
        assert first.test_client().get("/sso/nowhere/callback").status_code == 404
    second = create_app(app_config)
    assert second.test_client().get("/sso/nowhere/callback").status_code == 429


def test_without_redis_each_instance_counts_on_its_own(app, member, app_config):
    """Without REDIS_URL the counters are this process's memory: a new instance starts fresh."""
    assert app.config["RATELIMIT_STORAGE_URI"] == "portal-memory://"
    lock_out(app)
    assert right_password(app).status_code == 429
    other = create_app(app_config)
    assert right_password(other).status_code == 302


def test_limits_are_settings_checked_at_start():
    """A limit setting that does not parse stops the start, naming the variable."""
    config = load_config("/tmp", {"PORTAL_RATELIMIT_LOGIN_ACCOUNT": "3/minute;10/day"})
    assert config["PORTAL_RATELIMIT_LOGIN_ACCOUNT"] == "3/minute;10/day"
    with pytest.raises(ConfigError, match="PORTAL_RATELIMIT_SSO_START"):
        load_config("/tmp", {"PORTAL_RATELIMIT_SSO_START": "lots"})


def test_a_shorter_account_limit_locks_sooner(app_config, member):
    """The account limit comes from the setting: 2 failures lock when it says 2/minute."""
    app = create_app({**app_config, "PORTAL_RATELIMIT_LOGIN_ACCOUNT": "2/minute"})
    lock_out(app)
    assert right_password(app).status_code == 429


def test_without_redis_the_counters_are_this_process_memory_swept_inline(monkeypatch):
    """Without REDIS_URL the limits use memory that is swept inline, not by timer threads."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert load_config("/tmp")["RATELIMIT_STORAGE_URI"] == "portal-memory://"


def test_counted_requests_start_no_thread(app, member, monkeypatch):
    """Failed sign-ins and SSO starts are counted on the request's thread.

    limits' own MemoryStorage started a timer thread for nearly every counted request: in a
    crowd of sign-ins that was a thread per request, each one walking every counter.
    """
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    client = app.test_client()
    for _ in range(3):
        assert (
            client.post("/login", data={"email": "x@example.com", "password": WRONG}).status_code
            == 200
        )
        time.sleep(0.02)  # longer than the 10 ms after which limits' timer would start again
    for _ in range(3):
        client.get("/sso/nowhere/callback")
        time.sleep(0.02)
    assert started == []


def test_expired_counters_are_forgotten_by_a_later_hit():
    """Memory stays bounded: a counter past its window is dropped at the next sweep."""
    storage = SweepingMemoryStorage()
    storage.incr("old", expiry=0.01)
    time.sleep(0.03)
    storage._next_sweep = 0.0  # the sweep interval has passed
    storage.incr("new", expiry=60)
    assert "old" not in storage.storage
    assert storage.get("new") == 1
