"""gunicorn settings for Portal (read by `make serve`; `gunicorn -c gunicorn.conf.py wsgi:app`).

Chosen from `benchmarks/login_storm.py` (Portal on SQLite, N=300 sign-ins at concurrency 32, one
round each, this 2-core machine shared with other work, so +-20 %; see benchmarks/README.md):

    IdP latency  workers x threads  sign-ins/s  p50 / p99 ms  CPU ms/sign-in  failed of 300
    20 ms        2 x 4               21.7       1226 / 3929   36.4            0
    20 ms        2 x 8               19.6       1469 / 4189   51.2            0
    20 ms        2 x 16              13.2       1494 / 8676   52.4            11 (db locked)
    20 ms        4 x 4               18.3       1459 / 4638   44.2            2 (409)
    20 ms        4 x 8               17.7       1394 / 5920   43.6            3
    200 ms       2 x 4               10.0       3184 / 5410   43.7            0
    200 ms       2 x 8               11.0       2621 / 6191   46.3            0
    200 ms       2 x 16              11.2       2053 / 7073   48.2            13 (db locked)
    200 ms       4 x 4                9.8       2616 / 10184  51.6            1
    200 ms       4 x 8               11.8       2124 / 7382   52.5            3

Chosen: gthread, 1 worker per core, 8 threads. Only 2 x 4 and 2 x 8 finished every sign-in at both
latencies; 2 x 8 holds twice as many sign-ins in flight, which pays off with a slow provider
(p50 2.6 s against 3.2 s at 200 ms), and 2 x 4's lead at 20 ms is inside this machine's noise.
More workers than cores bought nothing; 16 threads per worker turned SQLite lock waits into
"database is locked" errors. Measured on main at 6d3f82f, before the sign-in hot path was
reworked (SQLite without WAL): re-run the sweep after it lands (benchmarks/README.md).

Why gthread: a sign-in spends most of its wall time waiting on the identity provider (two
calls: token and profile). A thread blocked on a socket costs no CPU, so threads let one process
hold many sign-ins in flight; sync workers would need a process per sign-in.

When to raise threads (PORTAL_THREADS): the identity provider is slow (hundreds of ms per call)
and the CPU is not busy. Threads wait on I/O, so more of them serve more sign-ins at once. Beyond
what the CPU can process they only lengthen the queue inside the process (and each holds a
database connection: keep workers x threads under the database's connection limit).

When to raise workers (PORTAL_WORKERS): the CPU is the limit (the provider is fast, `top` shows
the workers near 100 %). Python runs one thread at a time per process, so CPU-bound work scales
with processes, up to the number of cores; more workers than cores only adds memory and
switching. With several workers, set REDIS_URL so the rate limits are shared.

Every setting can be overridden from the environment: PORTAL_BIND, PORTAL_WORKERS,
PORTAL_THREADS, PORTAL_TIMEOUT, PORTAL_LOG_LEVEL, PORTAL_ACCESS_LOG ("-" for stdout, a path, or
"off").
"""

import os

_cores = os.cpu_count() or 1

bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("PORTAL_WORKERS", str(_cores)))  # 1 per core
threads = int(os.environ.get("PORTAL_THREADS", "8"))
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
_access = os.environ.get("PORTAL_ACCESS_LOG", "-")
accesslog = None if _access == "off" else _access
# The path without its query string: %(U)s, never %(r)s or %(q)s (the query carries `code` and
# `state`), nor %(f)s (a referrer may carry one). See docs/security.md, "Logs".
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)s'
