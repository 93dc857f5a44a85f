"""/metrics: Prometheus counters that move with real sign-ins, behind a bearer token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from portal import create_app
from portal.services.login_attempts import ATTEMPT_LIFETIME

TOKEN = "scrape-token-5b1e0c9d7f"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "PORTAL_METRICS_TOKEN": TOKEN}


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of /metrics, keyed by name and sorted labels."""
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_sign_in_moves_the_sign_in_provider_and_request_metrics(client, oidc, sso):
    """One real sign-in against the loopback provider is counted, with its provider calls."""
    slug = oidc.slug
    before = scrape(client)
    assert sso.sign_in(oidc).status_code == 302
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("portal_sign_ins_total", system=slug, outcome="success") == 1
    for step in ("token", "profile"):
        assert moved("portal_provider_call_seconds_count", system=slug, step=step) == 1
        assert moved("portal_provider_call_seconds_sum", system=slug, step=step) > 0
    assert moved("portal_request_seconds_count", endpoint="auth.sso_callback") == 1
    assert moved("portal_request_seconds_count", endpoint="auth.sso_login") == 1


def test_a_failed_sign_in_is_counted_under_its_failure_code(client, oidc, sso):
    """A callback whose state matches no attempt counts as state_invalid, not as success."""
    path = sso.authorize(oidc)
    forged = path.replace("state=", "state=x", 1)
    before = scrape(client)
    assert sso.callback(forged).status_code == 400
    after = scrape(client)
    code = {"system": oidc.slug, "outcome": "state_invalid"}
    assert (
        value(after, "portal_sign_ins_total", **code)
        - value(before, "portal_sign_ins_total", **code)
        == 1
    )
    success = {"system": oidc.slug, "outcome": "success"}
    assert value(after, "portal_sign_ins_total", **success) == value(
        before, "portal_sign_ins_total", **success
    )


def test_open_login_attempts_count_started_sign_ins_until_they_finish(client, oidc, sso):
    """Started and not back: counted; finished: no longer."""
    assert value(scrape(client), "portal_open_login_attempts") == 0
    path = sso.authorize(oidc)
    assert value(scrape(client), "portal_open_login_attempts") == 1
    assert sso.callback(path).status_code == 302
    assert value(scrape(client), "portal_open_login_attempts") == 0


def test_an_expired_attempt_is_not_open(app, client, oidc, sso):
    """An attempt older than its lifetime can no longer finish: not counted."""
    from portal.extensions import db
    from portal.models import LoginAttempt
    from portal.models.base import utcnow

    sso.authorize(oidc)
    attempt = db.session.scalars(db.select(LoginAttempt)).one()
    attempt.created_at = utcnow() - ATTEMPT_LIFETIME - ATTEMPT_LIFETIME
    db.session.commit()
    assert value(scrape(client), "portal_open_login_attempts") == 0


def test_metrics_is_not_found_unless_a_token_is_set(app_config):
    """No PORTAL_METRICS_TOKEN: /metrics is the site's ordinary 404 page."""
    app = create_app({**app_config, "PORTAL_METRICS_TOKEN": ""})
    resp = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 404
    assert b"portal_sign_ins" not in resp.data


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        TOKEN,
        f"Bearer {TOKEN.upper()}",
        "Bearer \u00e9t\u00e9",
    ],
)
def test_a_scraper_without_the_token_is_refused(client, authorization):
    """An attacker guessing at /metrics gets 401 and no metric."""
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = client.get("/metrics", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"portal_" not in resp.data
    assert TOKEN.encode() not in resp.data


def test_metrics_are_summed_over_gunicorn_workers(tmp_path):
    """PROMETHEUS_MULTIPROC_DIR: two worker processes count, and one scrape shows both."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = (
        "from portal import metrics; metrics.count_sign_in('acme', 'success');"
        "metrics.observe_provider_call('token', 0.25)"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, cwd=ROOT, timeout=60)
    show = (
        "from prometheus_client import CollectorRegistry, generate_latest;"
        "from prometheus_client.multiprocess import MultiProcessCollector;"
        "r = CollectorRegistry(); MultiProcessCollector(r);"
        "print(generate_latest(r).decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", show],
        env=env,
        check=True,
        cwd=ROOT,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    assert samples[("portal_sign_ins_total", (("outcome", "success"), ("system", "acme")))] == 2
    token = (("step", "token"), ("system", "-"))
    assert samples[("portal_provider_call_seconds_count", token)] == 2
