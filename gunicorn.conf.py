"""gunicorn settings for Portal (read by `make serve`; `gunicorn -c gunicorn.conf.py wsgi:app`).

Chosen from `benchmarks/login_storm.py` (Portal on SQLite, 400 sign-ins at concurrency 32, one
round each, this 2-core machine, 2026-12-02 after the sign-in hot path was reworked; see
benchmarks/README.md):

    IdP latency  workers x threads  sign-ins/s  p50 / p99 ms  CPU ms/sign-in  failed of 400
    20 ms        2 x 4               60.9        508 /  859    21.2            0
    20 ms        2 x 8               61.9        512 /  915    22.1            0
    20 ms        2 x 16              53.8        566 / 1127    25.4            0
    20 ms        4 x 4               67.7        374 / 1170    21.6            0
    20 ms        4 x 8               58.5        495 / 1206    25.3            0
    200 ms       2 x 4               17.2       1790 / 3092    21.2            0
    200 ms       2 x 8               34.3        883 / 1566    17.3            0
    200 ms       2 x 16              49.5        595 / 1073    19.3            0
    200 ms       4 x 4               25.8        867 / 2943    20.1            0
    200 ms       4 x 8               50.1        568 / 1196    21.2            0

Chosen: gthread, 1 worker per core, 16 threads. Real identity providers answer a token or profile
call in hundreds of milliseconds, not 20: there 16 threads per worker carried 44 % more sign-ins
than 8 with a lower p99, as 4 x 8 did with twice the processes (and their memory). Against a
20 ms provider the same setting costs about 13 % of the rate, when the CPU, not waiting, is the
limit. More workers than cores bought nothing. No setting failed a sign-in (before the rework,
16 threads per worker turned SQLite lock waits into "database is locked" errors).

Why gthread: a sign-in spends most of its wall time waiting on the identity provider (two
calls: token and profile). A thread blocked on a socket costs no CPU, so threads let one process
hold many sign-ins in flight; sync workers would need a process per sign-in.

When to raise threads (PORTAL_THREADS): the identity provider is slow (hundreds of ms per call)
and the CPU is not busy. Threads wait on I/O, so more of them serve more sign-ins at once. Beyond
what the CPU can process they only lengthen the queue inside the process (and each worker keeps
a database connection open per thread, up to twice that at a peak: keep workers x threads x 2
under the database's connection limit).

When to raise workers (PORTAL_WORKERS): the CPU is the limit (the provider is fast, `top` shows
the workers near 100 %). Python runs one thread at a time per process, so CPU-bound work scales
with processes, up to the number of cores; more workers than cores only adds memory and
switching. With several workers, set REDIS_URL so the rate limits are shared.

Metrics (/metrics, portal/metrics.py): with several workers, set PROMETHEUS_MULTIPROC_DIR to a
folder of its own (deploy/portal.service uses /run/portal/metrics). It is emptied when gunicorn
starts, and a dead worker's files are retired when it exits.

Every setting can be overridden from the environment: PORTAL_BIND, PORTAL_WORKERS,
PORTAL_THREADS, PORTAL_TIMEOUT, PORTAL_LOG_LEVEL, PORTAL_ACCESS_LOG ("off" by default, "-" for
stdout, or a path).
"""

import os

_cores = os.cpu_count() or 1

bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("PORTAL_WORKERS", str(_cores)))  # 1 per core
threads = int(os.environ.get("PORTAL_THREADS", "16"))
backlog = 2048
keepalive = 5
# A callback makes two calls to the provider, each bounded by PORTAL_HTTP_TOTAL_TIMEOUT (15 s).
timeout = int(os.environ.get("PORTAL_TIMEOUT", "40"))
graceful_timeout = 30
proc_name = "portal"
# gunicorn 27's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), shared by
# every gunicorn that user runs; Portal does not use it. (Older gunicorns ignore the setting.)
control_socket_disable = True

loglevel = os.environ.get("PORTAL_LOG_LEVEL", "info")
errorlog = "-"
# Off unless asked for: a sign-in is three requests, and the app already logs one line per
# sign-in (reference, system, outcome); the proxy in front (deploy/) keeps the access log.
_access = os.environ.get("PORTAL_ACCESS_LOG", "off")
accesslog = None if _access == "off" else _access
# The path without its query string: %(U)s, never %(r)s or %(q)s (the query carries `code` and
# `state`), nor %(f)s (a referrer may carry one). See docs/security.md, "Logs". Last, the
# request id Portal sent back (X-Request-ID), which its own lines of that request carry too.
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)s %({x-request-id}o)s'
)


def post_worker_init(worker):
    """Once the app is loaded: move its objects out of the garbage collector's sight.

    The modules, the app, its routes and the SQLAlchemy mappers live as long as the worker;
    `gc.freeze` stops every collection from walking them again, and a higher first threshold
    collects a request's short-lived objects in fewer, larger passes. Measured in-process:
    collections took about 0.3 ms per sign-in, 0.1 ms after this.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def on_starting(server):
    """Write gunicorn's own lines as JSON when PORTAL_LOG_FORMAT=json (the workers' lines
    follow once the app is loaded), and empty PROMETHEUS_MULTIPROC_DIR: values of a previous
    run must not add up with these."""
    if os.environ.get("PORTAL_LOG_FORMAT", "").strip().lower() == "json":
        from portal.request_log import JsonFormatter

        for handler in server.log.error_log.handlers + server.log.access_log.handlers:
            handler.setFormatter(JsonFormatter())
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        import pathlib

        path = pathlib.Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        for leftover in path.glob("*.db"):
            leftover.unlink()


def child_exit(server, worker):
    """Retire an exited worker's live metric files (prometheus_client's multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
