"""Prometheus metrics: sign-ins, identity-provider calls, request latency, open login attempts.

The metrics live in this process (``prometheus_client``'s default registry). Under gunicorn,
set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder writable by the workers: each worker then
writes its values to files there, /metrics adds up every worker's, and gunicorn.conf.py's
``child_exit`` hook retires a dead worker's files. Without the variable (one process, tests)
the values stay in memory.

On the sign-in's path a metric update is a dictionary look-up and an add: the labelled
children are built once per label set and kept here, so no request builds labels or takes
a lock across I/O. The open-attempt gauge costs nothing on that path: it is counted from the
database only when /metrics is scraped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

from portal.sso import http as sso_http

#: The outcome of a successful sign-in; a failed one is labelled with its catalogue code
#: (``SSOError.code``: state_invalid, provider_timeout...).
SUCCESS = "success"
#: The system label when a provider call is made outside a sign-in URL (the admin test start,
#: a discovery refresh).
NO_SYSTEM = "-"

SIGN_INS = Counter(
    "portal_sign_ins",
    "SSO sign-ins by system and outcome (success, or the failure code).",
    ["system", "outcome"],
)
PROVIDER_CALLS = Histogram(
    "portal_provider_call_seconds",
    "Duration of calls to identity providers, by system and protocol step.",
    ["system", "step"],
)
REQUESTS = Histogram(
    "portal_request_seconds",
    "Time to answer a request, by Flask endpoint.",
    ["endpoint"],
)

# Labelled children, built once per label set. Plain dictionaries: under the GIL a get and a
# set are atomic, and two threads building the same child get the same object from
# prometheus_client anyway.
_sign_ins: dict[tuple[str, str], Any] = {}
_calls: dict[tuple[str, str], Any] = {}
_requests: dict[str, Any] = {}


def count_sign_in(system: str, outcome: str) -> None:
    """Count one SSO sign-in of ``system`` that ended with ``outcome``."""
    key = (system, outcome)
    child = _sign_ins.get(key)
    if child is None:
        child = _sign_ins[key] = SIGN_INS.labels(system, outcome)
    child.inc()


def observe_provider_call(step: str, seconds: float) -> None:
    """Record one provider call (the engine's call observer, see portal/sso/http.py)."""
    system = NO_SYSTEM
    if has_request_context():
        args = request.view_args
        if args:
            system = args.get("slug") or NO_SYSTEM
    key = (system, step)
    child = _calls.get(key)
    if child is None:
        child = _calls[key] = PROVIDER_CALLS.labels(system, step)
    child.observe(seconds)


def _start_timer() -> None:
    g.portal_started = time.perf_counter()


def _observe_request(response: Response) -> Response:
    started = g.get("portal_started")
    if started is not None:
        endpoint = request.endpoint or "unmatched"
        child = _requests.get(endpoint)
        if child is None:
            child = _requests[endpoint] = REQUESTS.labels(endpoint)
        child.observe(time.perf_counter() - started)
    return response


class OpenAttemptsCollector(Collector):
    """The number of open login attempts (unused, not yet expired), counted at scrape time.

    The attempts live in the shared database, so every instance reports the same number:
    aggregate it with ``max``, not ``sum``.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from portal.services.login_attempts import count_open_attempts

        gauge = GaugeMetricFamily(
            "portal_open_login_attempts",
            "Sign-ins started and neither finished nor expired (all instances).",
        )
        gauge.add_metric([], count_open_attempts())
        yield gauge


def exposition() -> bytes:
    """Return the metrics in Prometheus' text format (every worker's, in multiprocess mode)."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for collector in (SIGN_INS, PROVIDER_CALLS, REQUESTS):
            registry.register(collector)
    registry.register(OpenAttemptsCollector())
    return generate_latest(registry)


def init_app(app: Flask) -> None:
    """Time every request and have the engine report its provider calls."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    app.after_request(_observe_request)
    sso_http.set_call_observer(observe_provider_call)


__all__ = ["REGISTRY", "count_sign_in", "exposition", "init_app", "observe_provider_call"]
