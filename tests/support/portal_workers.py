"""Portal served by several workers on loopback, as a production server runs it.

Two shapes: several apps (each from ``create_app``, each with its own engine and pool) served
by threaded servers inside the test process, or several separate processes (``python -m
tests.support.portal_workers``), each serving one app with threads. Both share one database,
so a browser that talks to one worker, then another, behaves as behind a load balancer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from tests.support.servers import LOOPBACK, LoopbackServer

#: How the parent hands a worker process its configuration (JSON).
CONFIG_ENV = "PORTAL_TEST_WORKER_CONFIG"
#: The line a worker process prints once it listens: ``listening <port>``.
READY = "listening"
ROOT = Path(__file__).resolve().parents[2]
#: Seconds a worker process may take to start listening.
START_TIMEOUT = 30.0


@contextmanager
def apps_in_threads(config: dict[str, Any], workers: int) -> Iterator[list[str]]:
    """Serve ``workers`` separate apps, each on its own threaded server; yield their URLs."""
    from portal import create_app
    from portal.extensions import db

    with ExitStack() as stack:
        urls = []
        for _ in range(workers):
            app = create_app(config)
            server = LoopbackServer(app, access_log=False).start()
            stack.callback(_dispose, app, db)
            stack.callback(server.stop)
            urls.append(server.url)
        yield urls


def _dispose(app: Any, db: Any) -> None:
    with app.app_context():
        db.engine.dispose()


@contextmanager
def apps_in_processes(
    config: dict[str, Any], workers: int, log_dir: Path
) -> Iterator[tuple[list[str], list[Path]]]:
    """Serve ``workers`` apps, one per process; yield their URLs and their log files.

    A worker stops when its stdin closes, so none outlives the test even if this one is
    interrupted.
    """
    env = {**os.environ, CONFIG_ENV: json.dumps(config)}
    procs: list[subprocess.Popen[str]] = []
    logs: list[Path] = []
    try:
        for n in range(workers):
            log = log_dir / f"worker-{n}.log"
            logs.append(log)
            with log.open("w") as stderr:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "tests.support.portal_workers"],
                        cwd=ROOT,
                        env=env,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        text=True,
                    )
                )
        urls = [_wait_until_listening(proc, log) for proc, log in zip(procs, logs, strict=True)]
        yield urls, logs
    finally:
        for proc in procs:
            if proc.stdin:
                proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()


def _wait_until_listening(proc: subprocess.Popen[str], log: Path) -> str:
    """Return the worker's URL once it prints that it listens."""
    stdout = proc.stdout
    assert stdout is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    if not line or not line[0].startswith(READY):
        proc.kill()
        raise RuntimeError(f"a Portal worker did not start:\n{log.read_text()[-3000:]}")
    return f"http://{LOOPBACK}:{int(line[0].split()[1])}"


class _QuietHandler(WSGIRequestHandler):
    """No access log: callback URLs carry codes and states."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Write nothing."""


def serve_worker() -> None:
    """Serve one app with threads on a free loopback port until stdin closes."""
    from portal import create_app

    app = create_app(json.loads(os.environ[CONFIG_ENV]))
    server = make_server(LOOPBACK, 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    print(READY, server.server_port, flush=True)
    sys.stdin.read()  # returns when the parent closes the pipe (or dies)
    server.shutdown()
    thread.join(10)
    server.server_close()


if __name__ == "__main__":
    serve_worker()
