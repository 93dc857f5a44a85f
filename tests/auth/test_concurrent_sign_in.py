"""SSO sign-ins at the same moment, over real connections to Portal served by several workers.

No part of Portal is mocked: each browser is its own cookie jar talking HTTP to a threaded
server, the workers share the test database (SQLite or PostgreSQL, as the suite runs), and
the provider is the loopback OIDC provider. Two shapes of server: two apps in one process
(each with its own engine, like two workers' pools) and two separate processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import Identity, User
from tests.support.portal_workers import apps_in_processes, apps_in_threads
from tests.support.providers import Provider, add_member

#: Same member twice at once, each round with a fresh member.
RACE_ROUNDS = 15
#: Many members at once.
CROWD = 40
CROWD_CONCURRENCY = 16
SIGNED_IN = "You are signed in as"
#: Generous: under load on a small machine a sign-in is slow, never wrong.
HTTP_TIMEOUT = httpx.Timeout(60.0)
#: The workers' outbound calls to the provider wait as long as production's defaults would.
WORKER_OUTBOUND = {"PORTAL_HTTP_CONNECT_TIMEOUT": 5.0, "PORTAL_HTTP_READ_TIMEOUT": 20.0}


@dataclass
class Outcome:
    """Where one browser's sign-in ended: the final status and what the page said."""

    status: int
    page: str
    #: The request it ended at: ``start`` or ``callback`` (followed to the landing page).
    step: str = "callback"

    @property
    def signed_in(self) -> bool:
        return self.status == 200 and SIGNED_IN in self.page

    def describe(self) -> str:
        """Name the outcome by status and the page's heading (no URL: it holds the code)."""
        if self.signed_in:
            return "signed in"
        heading = self.page.split("<h1", 1)[-1].split("</h1>", 1)[0].split(">", 1)[-1]
        return f"{self.step}: {self.status} {' '.join(heading.split())[:120]!r}"


class Browser:
    """One browser (its own cookies) talking to the workers as a load balancer would send it."""

    def __init__(self, provider: Provider, slug: str, start_url: str) -> None:
        self.provider = provider
        self.slug = slug
        self.http = httpx.Client(base_url=start_url, timeout=HTTP_TIMEOUT)

    def authorize(self, username: str) -> str | Outcome:
        """Start the sign-in and sign in at the provider; return the callback path and query,
        or where the start ended when it did not send the browser to the provider."""
        start = self.http.get(f"/sso/{self.slug}/login")
        if start.status_code != 302:
            return Outcome(start.status_code, start.text, step="start")
        back = urlsplit(self.provider.idp.authorize_redirect(start.headers["location"], username))
        return f"{back.path}?{back.query}"

    def come_back(self, callback: str, worker_url: str) -> Outcome:
        """Fire the callback at a worker and follow the redirects to the landing page."""
        response = self.http.get(worker_url + callback, follow_redirects=True)
        return Outcome(response.status_code, response.text)

    def close(self) -> None:
        self.http.close()


@pytest.fixture(params=["two apps in one process", "two processes"])
def workers(request, app, app_config, tmp_path) -> Iterator[tuple[list[str], Callable[[], str]]]:
    """Serve Portal by two workers on the test database; yield their URLs and their log text."""
    config = {**app_config, **WORKER_OUTBOUND, "SECRET_KEY": "concurrency-test-key-" + "x" * 24}
    if request.param == "two apps in one process":
        with apps_in_threads(config, 2) as urls:
            yield urls, lambda: ""
    else:
        with apps_in_processes(config, 2, tmp_path) as (urls, logs):
            yield urls, lambda: "\n".join(Path(log).read_text() for log in logs)


@pytest.fixture
def warnings_logged(caplog) -> Callable[[], str]:
    """Return the text (tracebacks too) logged at WARNING and up in this process, where the
    in-process workers log."""
    caplog.set_level(logging.WARNING)
    return lambda: caplog.text


def accounts_of(username: str) -> tuple[int, int]:
    """Return how many users carry this member's email, and how many identities they have."""
    db.session.expire_all()
    user_ids = list(
        db.session.scalars(sa.select(User.id).where(User.email == f"{username}@example.org"))
    )
    identities = db.session.scalar(
        sa.select(sa.func.count()).select_from(Identity).where(Identity.user_id.in_(user_ids))
    )
    return len(user_ids), identities or 0


def _at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together; return their results in order."""
    barrier = threading.Barrier(len(calls), timeout=30)

    def released(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(released, calls))


def test_the_same_member_signing_in_twice_at_once_is_signed_in_both_times(oidc, workers):
    """Two tabs, a double click: both callbacks land signed in, on one account, one identity."""
    urls, _ = workers
    slug = oidc.slug
    problems: list[str] = []
    for round_ in range(RACE_ROUNDS):
        username = f"twin{round_}"
        add_member(oidc.idp, username)
        browsers = [Browser(oidc, slug, urls[0]), Browser(oidc, slug, urls[1])]
        try:
            callbacks = [browser.authorize(username) for browser in browsers]
            assert all(isinstance(c, str) for c in callbacks), (
                f"round {round_}: {[c.describe() for c in callbacks if isinstance(c, Outcome)]}"
            )
            outcomes = _at_once(
                [
                    lambda b=browser, c=callback, u=url: b.come_back(c, u)
                    for browser, callback, url in zip(browsers, callbacks, urls, strict=True)
                ]
            )
        finally:
            for browser in browsers:
                browser.close()
        accounts = accounts_of(username)
        if not all(o.signed_in for o in outcomes) or accounts != (1, 1):
            problems.append(
                f"round {round_}: {[o.describe() for o in outcomes]}, "
                f"{accounts[0]} user(s), {accounts[1]} identity(ies)"
            )
    assert not problems, (
        f"{len(problems)} of {RACE_ROUNDS} double sign-ins went wrong:\n" + "\n".join(problems)
    )


def test_many_members_signing_in_at_once_all_get_in(oidc, workers, warnings_logged):
    """Forty members at once, sixteen at a time: all signed in, no 500, no locked database."""
    urls, worker_logs = workers
    slug = oidc.slug
    usernames = [f"crowd{n}" for n in range(CROWD)]
    for username in usernames:
        add_member(oidc.idp, username)

    def sign_in(n: int) -> Outcome:
        browser = Browser(oidc, slug, urls[n % len(urls)])
        try:
            callback = browser.authorize(usernames[n])
            if isinstance(callback, Outcome):
                return callback
            return browser.come_back(callback, urls[(n + 1) % len(urls)])
        finally:
            browser.close()

    with ThreadPoolExecutor(CROWD_CONCURRENCY) as pool:
        outcomes = list(pool.map(sign_in, range(CROWD)))

    failed = [f"{usernames[n]}: {o.describe()}" for n, o in enumerate(outcomes) if not o.signed_in]
    locked = (warnings_logged() + worker_logs()).count("database is locked")
    assert not failed and not locked, (
        f"{len(failed)} of {CROWD} sign-ins failed; 'database is locked' in the logs "
        f"{locked} time(s):\n" + "\n".join(failed)
    )
    assert [accounts_of(u) for u in usernames] == [(1, 1)] * CROWD
