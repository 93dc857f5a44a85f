"""How long each request of a sign-in holds a server thread, and how much CPU it spends.

``benchmarks/login_storm.py --request-times`` serves either app through `portal` or
`baseline` below (gunicorn ``request_times:portal()``, with ``--pythonpath benchmarks``): the
app itself, unchanged, wrapped by a WSGI callable that notes, for every request, when it
ended, its wall time from the moment the app is called until it returns, and the thread's CPU
time over the same span. A gthread worker lends one thread per request for exactly that span.
Each worker writes its notes as JSON to ``BENCH_REQUEST_TIMES_DIR/<pid>.json`` when it exits;
`summarize` reads them back.

Not how either app is deployed: a diagnostic. The wrapper's own cost (two clock reads and a
list append per request) is counted in the app's CPU.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: Which request of a sign-in a path is: the start, the provider's callback, the landing page.
KINDS = ("start", "callback", "landing")


def kind_of(path: str) -> str:
    if path.endswith("/callback"):
        return "callback"
    if path.endswith("/login"):
        return "start"
    return "landing"


def _timed(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    folder = os.environ.get("BENCH_REQUEST_TIMES_DIR")
    if not folder:
        raise RuntimeError("BENCH_REQUEST_TIMES_DIR names no folder for the request times")
    notes: list[tuple[float, str, float, float]] = []  # (ended, kind, wall s, CPU s)

    def write() -> None:
        path = Path(folder) / f"{os.getpid()}.json"
        path.write_text(json.dumps(notes))

    atexit.register(write)

    def timed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        wall, cpu = time.monotonic(), time.thread_time()
        try:
            return app(environ, start_response)
        finally:
            now = time.monotonic()
            notes.append(
                (now, kind_of(environ.get("PATH_INFO", "")), now - wall, time.thread_time() - cpu)
            )

    return timed


def portal() -> Callable[..., Iterable[bytes]]:
    """Portal's ``wsgi:app``, timed (gunicorn runs in the checkout)."""
    from wsgi import app

    app.wsgi_app = _timed(app.wsgi_app)
    return app


def baseline() -> Callable[..., Iterable[bytes]]:
    """The baseline's app, timed."""
    from baseline_app import create_app

    app = create_app()
    app.wsgi_app = _timed(app.wsgi_app)
    return app


def summarize(folder: Path, window: tuple[float, float]) -> dict[str, float]:
    """Mean wall and CPU ms per request kind, over the notes of every worker in ``folder``.

    Only requests that ended within ``window`` (``time.monotonic()`` of the measured storm,
    the same clock in every process) count: not the health checks nor the warm-up.
    ``thread_ms`` is the sum of the kinds' mean wall times: how long one sign-in holds a
    server thread.
    """
    kept: list[tuple[float, str, float, float]] = []
    for path in folder.glob("*.json"):
        kept.extend(n for n in json.loads(path.read_text()) if window[0] <= n[0] <= window[1])
    out: dict[str, float] = {}
    for kind in KINDS:
        mine = [n for n in kept if n[1] == kind]
        if not mine:
            continue
        out[f"{kind}_wall_ms"] = round(sum(n[2] for n in mine) * 1000 / len(mine), 2)
        out[f"{kind}_cpu_ms"] = round(sum(n[3] for n in mine) * 1000 / len(mine), 2)
    out["thread_ms"] = round(sum(out.get(f"{k}_wall_ms", 0.0) for k in KINDS), 2)
    return out
