"""Login storm: Portal's SSO sign-ins per second next to a hand-written Flask + Authlib client.

    .venv/bin/python benchmarks/login_storm.py [--database-url URL] [-n N] [-c C]
        [--idp-latency-ms 20] [--rounds R] [--workers W] [--threads T]

Everything runs on 127.0.0.1 and is started here:

* a small, fast OAuth 2.0 identity provider (this file, ``--serve-idp``): ``/authorize``
  answers 302 straight back with a single-use code (a random one of ``--idp-users`` members,
  or the one ``login_hint`` names); ``/token`` checks client_secret_basic and PKCE S256;
  ``/userinfo`` returns sub, preferred_username, email, given_name, family_name and groups.
  ``--idp-latency-ms`` delays token and userinfo answers without spending CPU;
* the baseline (``benchmarks/baseline_app.py``, always on a fresh SQLite file);
* Portal, from this checkout, with a fresh database each round (an SQLite file in a temporary
  directory, or with ``--database-url postgresql://...`` a scratch database created on that
  server and dropped afterwards), migrated with ``flask --app portal db upgrade`` and given the
  system with ``flask --app portal sso import``.

Both apps run under gunicorn gthread with the same workers x threads and the same command-line
settings (no access log); Portal also reads its ``gunicorn.conf.py`` (as deployed: the garbage
collector's tuning once the app is loaded), the baseline no config file. Runs alternate
baseline/Portal each round. Every sign-in starts with an empty cookie jar and follows redirects
by hand; it counts only when it ends on a 200 page from the app containing "You are signed in
as". App CPU is utime+stime of the gunicorn master and workers (from /proc) across the measured
storm, divided by the successful sign-ins.

Prints a table of medians over the rounds, Portal's ratios to the baseline, whether the goal of
issue 8 is met, and one JSON line last. Exits 0 whatever the figures (a measuring tool, not a
gate); 2 when it could not run. Every server is started in its own process group under
``timeout`` (``--max-life-s``) and killed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import request_times  # benchmarks/request_times.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
SIGNED_IN = "You are signed in as"
CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-client-secret"  # a loopback test credential, never a real one
PORTAL_SLUG = "bench-idp"
GROUPS = ("members", "committee", "staff", "webinars", "library")
REDIRECTS = {301, 302, 303, 307, 308}

#: The goal of issue 8, Portal against the baseline in one alternating run.
GOAL = {"rate_ratio_min": 1.2, "cpu_ratio_max": 0.8, "p99_ratio_max": 1.0, "failed_max": 0}


# ------------------------------------------------------------------ figures


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), int(-(-p * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


@dataclass
class RunResult:
    app: str
    round: int
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_ms_per_signin: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)
    #: With ``--request-times``: wall and CPU ms per request kind (`request_times.summarize`).
    request_times: dict[str, float] = field(default_factory=dict)


def summarize(
    app: str,
    rnd: int,
    latencies: list[float],
    failures: dict[str, int],
    seconds: float,
    cpu_s: float,
) -> RunResult:
    lat = sorted(latencies)
    ok = len(lat)
    return RunResult(
        app=app,
        round=rnd,
        ok=ok,
        failed=sum(failures.values()),
        seconds=round(seconds, 2),
        rate=round(ok / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=round(percentile(lat, 50) * 1000, 1),
        p90_ms=round(percentile(lat, 90) * 1000, 1),
        p99_ms=round(percentile(lat, 99) * 1000, 1),
        cpu_ms_per_signin=round(cpu_s * 1000 / ok, 2) if ok else 0.0,
        failures=dict(failures),
    )


METRICS = ("rate", "p50_ms", "p90_ms", "p99_ms", "cpu_ms_per_signin", "failed")


def medians(results: list[RunResult], app: str) -> dict[str, float]:
    """The median of each figure over the rounds of one app (failures are summed)."""
    runs = [r for r in results if r.app == app]
    out: dict[str, float] = {}
    for m in METRICS:
        values = [getattr(r, m) for r in runs]
        out[m] = sum(values) if m == "failed" else round(statistics.median(values), 2)
    for key in runs[0].request_times if runs else ():
        out[key] = round(statistics.median(r.request_times.get(key, 0.0) for r in runs), 2)
    out["rounds"] = len(runs)
    return out


def compare(base: dict[str, float], portal: dict[str, float]) -> dict:
    """Portal's ratios to the baseline and whether each part of the goal is met."""

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 2) if b else None

    r = {
        "rate": ratio(portal["rate"], base["rate"]),
        "cpu": ratio(portal["cpu_ms_per_signin"], base["cpu_ms_per_signin"]),
        "p99": ratio(portal["p99_ms"], base["p99_ms"]),
    }
    checks = {
        "rate": r["rate"] is not None and r["rate"] >= GOAL["rate_ratio_min"],
        "cpu": r["cpu"] is not None and r["cpu"] <= GOAL["cpu_ratio_max"],
        "p99": r["p99"] is not None and r["p99"] <= GOAL["p99_ratio_max"],
        "failures": portal["failed"] <= GOAL["failed_max"],
    }
    return {"ratios": r, "checks": checks, "goal_met": all(checks.values())}


# ------------------------------------------------------------------ the identity provider


def idp_user(index: int) -> dict:
    """Member ``index`` (stable across runs): the claims /userinfo returns."""
    rng = random.Random(index)  # noqa: S311 - test data, not secrets
    return {
        "sub": f"bench-{index:05d}",
        "preferred_username": f"member{index:05d}",
        "email": f"member{index:05d}@example.org",
        "email_verified": True,
        "given_name": f"Given{index:05d}",
        "family_name": f"Family{index:05d}",
        "groups": sorted(rng.sample(GROUPS, rng.randint(0, 3))),
    }


def pkce_s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


def make_idp(latency_ms: float, users: int, client_id: str, client_secret: str):
    """The aiohttp application of the loopback identity provider."""
    from aiohttp import web

    codes: dict[str, dict] = {}
    tokens: dict[str, tuple[int, float]] = {}
    delay = latency_ms / 1000.0
    expected_basic = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()

    def error(status: int, code: str) -> web.Response:
        return web.json_response({"error": code}, status=status)

    def purge(now: float) -> None:
        if len(codes) > 5000:
            for k in [k for k, v in codes.items() if v["exp"] < now]:
                del codes[k]
        if len(tokens) > 50000:
            for k in [k for k, v in tokens.items() if v[1] < now]:
                del tokens[k]

    async def healthz(_request):
        return web.Response(text="ok")

    async def authorize(request):
        q = request.query
        if q.get("response_type") != "code" or q.get("client_id") != client_id:
            return error(400, "invalid_request")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return error(400, "invalid_request")
        redirect_uri = q.get("redirect_uri", "")
        if not redirect_uri.startswith("http://127.0.0.1:"):
            return error(400, "invalid_request")
        hint = q.get("login_hint", "")
        index = int(hint) % users if hint.isdigit() else random.randrange(users)  # noqa: S311
        now = time.monotonic()
        purge(now)
        code = secrets.token_urlsafe(24)
        codes[code] = {
            "user": index,
            "redirect_uri": redirect_uri,
            "challenge": q["code_challenge"],
            "exp": now + 60,
        }
        params = {"code": code}
        if "state" in q:
            params["state"] = q["state"]
        sep = "&" if "?" in redirect_uri else "?"
        raise web.HTTPFound(redirect_uri + sep + urlencode(params))

    async def token(request):
        if request.headers.get("Authorization") != expected_basic:
            return error(401, "invalid_client")
        form = await request.post()
        if form.get("grant_type") != "authorization_code":
            return error(400, "unsupported_grant_type")
        grant = codes.pop(str(form.get("code", "")), None)  # single use
        if grant is None or grant["exp"] < time.monotonic():
            return error(400, "invalid_grant")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return error(400, "invalid_grant")
        if pkce_s256(str(form.get("code_verifier", ""))) != grant["challenge"]:
            return error(400, "invalid_grant")
        if delay:
            await asyncio.sleep(delay)
        access = secrets.token_urlsafe(24)
        tokens[access] = (grant["user"], time.monotonic() + 300)
        return web.json_response(
            {"access_token": access, "token_type": "Bearer", "expires_in": 300},
            headers={"Cache-Control": "no-store"},
        )

    async def userinfo(request):
        auth = request.headers.get("Authorization", "")
        entry = tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if entry is None or entry[1] < time.monotonic():
            return error(401, "invalid_token")
        if delay:
            await asyncio.sleep(delay)
        return web.json_response(idp_user(entry[0]))

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/authorize", authorize)
    app.router.add_post("/token", token)
    app.router.add_get("/userinfo", userinfo)
    return app


def serve_idp(port: int, latency_ms: float, users: int, max_life_s: float) -> None:
    """Run the identity provider on 127.0.0.1:port for at most max_life_s seconds."""
    from aiohttp import web

    async def main() -> None:
        runner = web.AppRunner(
            make_idp(latency_ms, users, CLIENT_ID, CLIENT_SECRET), access_log=None
        )
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
        try:
            await asyncio.sleep(max_life_s)
        finally:
            await runner.cleanup()

    asyncio.run(main())


# ------------------------------------------------------------------ processes


class Processes:
    """Servers started in their own process groups; every group is killed on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        atexit.register(self.stop_all)

    def start(
        self,
        argv: list[str],
        *,
        env: dict | None = None,
        cwd: Path | None = None,
        log: Path,
        max_life_s: float,
    ) -> subprocess.Popen:
        cmd = ["timeout", "-k", "5", str(int(max_life_s)), *argv]
        with open(log, "ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - our own argv
                cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        try:  # gunicorn workers left behind by a master that died first
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, limit_s: float, proc: subprocess.Popen) -> None:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}) before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback
                if r.status < 500:
                    return
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no answer from {url} within {limit_s:.0f} s")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime seconds) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    """utime+stime of a process and all its descendants (the gunicorn master and workers)."""
    table = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _proc_stat(int(d))
            if st:
                table[int(d)] = st
    total, todo, seen = 0.0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        total += table[pid][1]
        todo.extend(p for p, (ppid, _) in table.items() if ppid == pid)
    return total


def time_wait_sockets() -> int:
    count = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                count += sum(1 for line in f if line.split()[3:4] == ["06"])
        except OSError:
            pass
    return count


def cooldown(limit_s: float = 60) -> None:
    """Wait (bounded) for the previous storm's TIME_WAIT sockets to drain."""
    end = time.monotonic() + limit_s
    while time_wait_sockets() > 4000 and time.monotonic() < end:
        time.sleep(1)


# ------------------------------------------------------------------ the load driver


async def sign_in(session_factory, start_url: str, app_origin: str) -> str | None:
    """One sign-in with a fresh cookie jar; None when it succeeded, else a short reason."""
    url = start_url
    async with session_factory() as session:
        for _hop in range(10):
            parts = urlsplit(url)
            if parts.hostname != "127.0.0.1":
                return "redirect off loopback"
            try:
                async with session.get(url, allow_redirects=False) as resp:
                    if resp.status in REDIRECTS and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    body = await resp.text()
            except TimeoutError:
                return f"timeout at {parts.path}"
            except Exception as exc:  # noqa: BLE001 - any transport failure counts as failed
                return f"{type(exc).__name__} at {parts.path}"
            here = f"{parts.scheme}://{parts.netloc}"
            if resp.status == 200 and here == app_origin and SIGNED_IN in body:
                return None
            return f"{resp.status} at {parts.path}"  # the path only: queries carry codes
    return "too many redirects"


async def storm(
    start_url: str, n: int, c: int, warmup: int, timeout_s: float, cpu_root: int
) -> tuple[list[float], dict[str, int], float, float, tuple[float, float]]:
    """Warm up, then run n sign-ins c at a time; (latencies, failures, seconds, app CPU s,
    and the measured storm's start and end on ``time.monotonic()``)."""
    import aiohttp

    app_origin = "{0.scheme}://{0.netloc}".format(urlsplit(start_url))
    per_request = aiohttp.ClientTimeout(total=30)

    def session_factory():
        return aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies per host, as a browser keeps them
            connector=aiohttp.TCPConnector(limit=4, force_close=False),
            timeout=per_request,
        )

    async def run(count: int, deadline: float, latencies: list[float], failures: dict) -> None:
        remaining = [count]

        async def worker() -> None:
            while remaining[0] > 0 and time.monotonic() < deadline:
                remaining[0] -= 1
                t0 = time.perf_counter()
                reason = await sign_in(session_factory, start_url, app_origin)
                if reason is None:
                    latencies.append(time.perf_counter() - t0)
                else:
                    failures[reason] = failures.get(reason, 0) + 1

        tasks = [asyncio.create_task(worker()) for _ in range(min(c, count))]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=deadline - time.monotonic() + 35)
        except TimeoutError:
            failures["cancelled at the deadline"] = remaining[0]

    await run(warmup, time.monotonic() + timeout_s, [], {})
    latencies: list[float] = []
    failures: dict[str, int] = {}
    cpu0 = tree_cpu_seconds(cpu_root)
    t0, began = time.perf_counter(), time.monotonic()
    await run(n, time.monotonic() + timeout_s, latencies, failures)
    seconds = time.perf_counter() - t0
    window = (began, time.monotonic())
    cpu = tree_cpu_seconds(cpu_root) - cpu0
    not_started = n - len(latencies) - sum(failures.values())
    if not_started > 0:
        failures["not started before the deadline"] = not_started
    return latencies, failures, seconds, cpu, window


# ------------------------------------------------------------------ databases and apps


def portal_export(idp: str) -> dict:
    """The Portal export of a system at the loopback IdP: the same flow as the baseline."""
    return {
        "portal_export": 1,
        "auth_system": {
            "type": "oauth2",
            "name": "Bench IdP",
            "client_id": CLIENT_ID,
            "login_url": f"{idp}/authorize?response_type=code&client_id=%ClientID%"
            "&redirect_uri=%RedirectURL%&scope=%Scope%&state=%State%"
            "&code_challenge=%CodeChallenge%&code_challenge_method=S256",
            "token_url": f"{idp}/token",
            "token_method": "POST",
            "token_headers": "Authorization: Basic %BasicAuth%",
            "token_body": "grant_type=authorization_code&code=%Code%"
            "&redirect_uri=%RedirectURL%&code_verifier=%CodeVerifier%",
            "access_token_path": "access_token",
            "profile_url": f"{idp}/userinfo",
            "profile_headers": "Authorization: Bearer %Token%",
            "scope": "email profile",
            "login_label": "Sign in with Bench IdP",
            "login_mode": "local_and_remote",
            "enabled": True,
            "params": {
                "user_id": {"path": "sub", "can_upgrade": False, "must_supply": True},
                "username": {"path": "preferred_username"},
                "email": {"path": "email", "must_supply": True},
                "first_name": {"path": "given_name"},
                "last_name": {"path": "family_name"},
                "groups": {"path": "groups"},
            },
        },
    }


class ScratchPostgres:
    """A database created on the server of a URL for one round, dropped afterwards.

    Without CREATEDB, falls back to dropping and recreating the public schema of the URL's
    own database (which then loses its tables: pass a database meant for this).
    """

    def __init__(self, url: str) -> None:
        import psycopg

        self.psycopg = psycopg
        self.url = url
        self.name: str | None = None

    def _admin(self):
        return self.psycopg.connect(
            self.url.replace("postgresql+psycopg://", "postgresql://"),
            autocommit=True,
            connect_timeout=5,
        )

    def create(self) -> str:
        name = f"portal_bench_{os.getpid()}_{secrets.token_hex(3)}"
        try:
            with self._admin() as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            self.name = name
            return urlsplit(self.url)._replace(path="/" + name).geturl()
        except self.psycopg.errors.InsufficientPrivilege:
            with self._admin() as conn:
                conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
                conn.execute("CREATE SCHEMA public")
            return self.url

    def drop(self) -> None:
        if self.name:
            with self._admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.name = None


def reachable(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001
        return False


@dataclass
class Options:
    n: int
    c: int
    warmup: int
    rounds: int
    workers: int
    threads: int
    idp_latency_ms: float
    idp_users: int
    database_url: str | None
    timeout_s: float
    max_life_s: float
    apps: tuple[str, ...]
    keep: bool
    request_times: bool = False


def _has_control_socket() -> bool:
    """gunicorn 27 opens a control socket at one path per user: two servers would share it."""
    from gunicorn.config import KNOWN_SETTINGS

    return any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS)


def gunicorn_argv(opts: Options, port: int, target: str, config: str = os.devnull) -> list[str]:
    """The same server settings for both apps, given on the command line (they win over a
    config file's). Portal reads its own ``gunicorn.conf.py`` as it is deployed (``make serve``,
    a gunicorn started in the checkout); the baseline reads none: hand-written code has none.
    With ``--request-times`` either app is served through `request_times`."""
    if opts.request_times:
        app = "baseline" if target.startswith("baseline_app") else "portal"
        target = f"request_times:{app}()"
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        config,
        "-k",
        "gthread",
        "-w",
        str(opts.workers),
        "--threads",
        str(opts.threads),
        "--backlog",
        "2048",
        "--keep-alive",
        "5",
        "--timeout",
        "60",
        "--log-level",
        "warning",
        "-b",
        f"127.0.0.1:{port}",
        *(["--no-control-socket"] if _has_control_socket() else []),
        *(["--pythonpath", str(BENCH_DIR)] if opts.request_times else []),
        target,
    ]


def run_once(app: str, rnd: int, opts: Options, procs: Processes, work: Path) -> RunResult:
    cooldown()
    rdir = work / f"{app}-{rnd}"
    rdir.mkdir()
    idp_port, app_port = free_port(), free_port()
    idp_url = f"http://127.0.0.1:{idp_port}"
    idp = procs.start(
        [
            sys.executable,
            __file__,
            "--serve-idp",
            "--port",
            str(idp_port),
            "--idp-latency-ms",
            str(opts.idp_latency_ms),
            "--idp-users",
            str(opts.idp_users),
            "--max-life-s",
            str(opts.max_life_s),
        ],
        log=rdir / "idp.log",
        max_life_s=opts.max_life_s + 10,
    )
    wait_http(f"{idp_url}/healthz", 20, idp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL"))}
    times = rdir / "request-times"
    if opts.request_times:
        times.mkdir()
        env["BENCH_REQUEST_TIMES_DIR"] = str(times)
    scratch = None
    try:
        if app == "baseline":
            env.update(
                IDP_URL=idp_url,
                DATABASE_URL=f"sqlite:///{rdir / 'baseline.sqlite3'}",
                CLIENT_ID=CLIENT_ID,
                CLIENT_SECRET=CLIENT_SECRET,
                SECRET_KEY=secrets.token_hex(32),
            )
            subprocess.run(  # noqa: S603 - create the table once, before the workers race to
                [sys.executable, "-c", "import baseline_app; baseline_app.create_app()"],
                env=env,
                cwd=BENCH_DIR,
                check=True,
                timeout=60,
                capture_output=True,
            )
            cwd, target, start, health = (
                BENCH_DIR,
                "baseline_app:create_app()",
                "/login",
                "/healthz",
            )
            config = os.devnull
        else:
            if opts.database_url:
                scratch = ScratchPostgres(opts.database_url)
                db_url = scratch.create()
            else:
                db_url = f"sqlite:///{rdir / 'portal.sqlite3'}"
            env.update(
                PORTAL_ENV="development",
                PORTAL_INSTANCE_PATH=str(rdir / "instance"),
                PORTAL_BASE_URL=f"http://127.0.0.1:{app_port}",
                DATABASE_URL=db_url,
                SECRET_KEY=secrets.token_hex(32),
            )
            (rdir / "instance").mkdir()
            (rdir / "system.json").write_text(json.dumps(portal_export(idp_url)))
            (rdir / "secret").write_text(CLIENT_SECRET + "\n")
            flask = [sys.executable, "-m", "flask", "--app", "portal"]
            for cmd in (
                ["db", "upgrade"],
                [
                    "sso",
                    "import",
                    str(rdir / "system.json"),
                    "--client-secret-file",
                    str(rdir / "secret"),
                ],
            ):
                done = subprocess.run(  # noqa: S603
                    flask + cmd, env=env, cwd=ROOT, timeout=120, capture_output=True, text=True
                )
                if done.returncode:
                    raise RuntimeError(f"flask {' '.join(cmd[:2])} failed:\n{done.stderr[-2000:]}")
            cwd, target, health = ROOT, "wsgi:app", "/login"
            config = str(ROOT / "gunicorn.conf.py")
            start = f"/sso/{PORTAL_SLUG}/login"
        server = procs.start(
            gunicorn_argv(opts, app_port, target, config),
            env=env,
            cwd=cwd,
            log=rdir / "app.log",
            max_life_s=opts.max_life_s,
        )
        try:
            wait_http(f"http://127.0.0.1:{app_port}{health}", 60, server)
            latencies, failures, seconds, cpu, window = asyncio.run(
                storm(
                    f"http://127.0.0.1:{app_port}{start}",
                    opts.n,
                    opts.c,
                    opts.warmup,
                    opts.timeout_s,
                    server.pid,
                )
            )
        finally:
            procs.stop(server)
    finally:
        procs.stop(idp)
        if scratch:
            scratch.drop()
    result = summarize(app, rnd, latencies, failures, seconds, cpu)
    if opts.request_times:
        result.request_times = request_times.summarize(times, window)
    return result


# ------------------------------------------------------------------ report


def table(opts: Options, meds: dict[str, dict[str, float]]) -> str:
    db = "PostgreSQL" if opts.database_url else "SQLite"
    cols = [a for a in ("baseline", "portal") if a in meds]
    label = {"baseline": "baseline (SQLite)", "portal": f"Portal ({db})"}
    rows = [
        ("sign-ins/s", "rate", "{:.1f}"),
        ("p50 ms", "p50_ms", "{:.0f}"),
        ("p90 ms", "p90_ms", "{:.0f}"),
        ("p99 ms", "p99_ms", "{:.0f}"),
        ("app CPU ms/sign-in", "cpu_ms_per_signin", "{:.1f}"),
        ("failed (sum)", "failed", "{:.0f}"),
    ]
    head = f"| {'':<20} | " + " | ".join(f"{label[a]:>19}" for a in cols) + " |"
    lines = [head, "|" + "|".join(["-" * 22] + ["-" * 21] * len(cols)) + "|"]
    for name, key, fmt in rows:
        lines.append(
            f"| {name:<20} | " + " | ".join(f"{fmt.format(meds[a][key]):>19}" for a in cols) + " |"
        )
    return "\n".join(lines)


def request_times_line(times: dict[str, float]) -> str:
    """One line of `request_times.summarize`'s figures: wall (CPU) ms per request kind."""
    parts = [
        f"{kind} {times[kind + '_wall_ms']:.1f} ({times[kind + '_cpu_ms']:.2f})"
        for kind in request_times.KINDS
        if kind + "_wall_ms" in times
    ]
    held = f"thread held per sign-in {times['thread_ms']:.1f} ms"
    return f"{held}: {', '.join(parts)} ms wall (CPU)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--database-url", help="PostgreSQL server for Portal (a scratch database is made)"
    )
    p.add_argument("-n", type=int, default=1000, help="measured sign-ins per run (default 1000)")
    p.add_argument("-c", type=int, default=32, help="sign-ins in flight (default 32)")
    p.add_argument("--warmup", type=int, default=50, help="unmeasured sign-ins first (default 50)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers, both apps (default 2)")
    p.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
    p.add_argument("--idp-latency-ms", type=float, default=20.0, help="token/userinfo delay")
    p.add_argument("--idp-users", type=int, default=10_000, help="members at the IdP")
    p.add_argument("--apps", default="baseline,portal", help="which apps (baseline,portal)")
    p.add_argument("--timeout-s", type=float, default=180, help="no sign-in starts after this")
    p.add_argument("--max-life-s", type=float, default=600, help="servers are killed after this")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument(
        "--request-times",
        action="store_true",
        help="also time each request inside the apps (benchmarks/request_times.py)",
    )
    p.add_argument("--serve-idp", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.n < 1 or args.c < 1 or args.rounds < 1 or args.workers < 1 or args.threads < 1:
        p.error("-n, -c, --rounds, --workers and --threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_idp:
        serve_idp(args.port, args.idp_latency_ms, args.idp_users, args.max_life_s)
        return 0
    apps = tuple(a.strip() for a in args.apps.split(",") if a.strip())
    if not apps or set(apps) - {"baseline", "portal"}:
        print("--apps takes baseline, portal or both", file=sys.stderr)
        return 2
    opts = Options(
        n=args.n,
        c=args.c,
        warmup=args.warmup,
        rounds=args.rounds,
        workers=args.workers,
        threads=args.threads,
        idp_latency_ms=args.idp_latency_ms,
        idp_users=args.idp_users,
        database_url=args.database_url,
        timeout_s=args.timeout_s,
        max_life_s=args.max_life_s,
        apps=apps,
        keep=args.keep,
        request_times=args.request_times,
    )
    if opts.database_url and not reachable(opts.database_url):
        print(
            f"PostgreSQL at {urlsplit(opts.database_url).hostname} is not reachable",
            file=sys.stderr,
        )
        return 2
    db = "PostgreSQL" if opts.database_url else "SQLite"
    print(
        f"login storm: n={opts.n} c={opts.c} rounds={opts.rounds}"
        f" gthread {opts.workers}x{opts.threads},"
        f" idp latency {opts.idp_latency_ms:g} ms, Portal on {db}",
        flush=True,
    )
    procs = Processes()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="portal-login-storm-"))
    results: list[RunResult] = []
    try:
        for rnd in range(1, opts.rounds + 1):
            order = apps if rnd % 2 else tuple(reversed(apps))
            for app in order:
                r = run_once(app, rnd, opts, procs, work)
                results.append(r)
                why = ", ".join(f"{k}: {v}" for k, v in r.failures.items())
                why = f"  ({why})" if why else ""
                print(
                    f"  round {rnd} {app:<8} {r.rate:7.1f}/s"
                    f"  p50 {r.p50_ms:6.0f}  p99 {r.p99_ms:6.0f} ms"
                    f"  CPU {r.cpu_ms_per_signin:5.1f} ms  failed {r.failed}{why}",
                    flush=True,
                )
                if r.request_times:
                    print(f"    {request_times_line(r.request_times)}", flush=True)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"login storm could not run: {exc}", file=sys.stderr)
        print(f"logs kept in {work}", file=sys.stderr)
        return 2
    finally:
        procs.stop_all()
    if not opts.keep:
        shutil.rmtree(work, ignore_errors=True)
    meds = {a: medians(results, a) for a in apps}
    print()
    print(f"medians of {opts.rounds} round(s), {opts.n} sign-ins each at concurrency {opts.c}:")
    print(table(opts, meds))
    for app in apps:
        if "thread_ms" in meds[app]:
            print(f"{app:<8} {request_times_line(meds[app])}")
    verdict = None
    if "baseline" in meds and "portal" in meds:
        verdict = compare(meds["baseline"], meds["portal"])
        r, ch = verdict["ratios"], verdict["checks"]
        mark = {True: "ok", False: "NOT MET"}
        print(
            f"Portal / baseline: rate {r['rate']}x"
            f" (goal >= {GOAL['rate_ratio_min']}: {mark[ch['rate']]}),"
            f" CPU {r['cpu']}x (goal <= {GOAL['cpu_ratio_max']}: {mark[ch['cpu']]}),"
            f" p99 {r['p99']}x (goal <= 1: {mark[ch['p99']]}),"
            f" failed {meds['portal']['failed']:.0f} (goal 0: {mark[ch['failures']]})"
        )
        print("goal met" if verdict["goal_met"] else "goal not met")
    summary = {
        "db": db.lower(),
        "n": opts.n,
        "c": opts.c,
        "rounds": opts.rounds,
        "workers": opts.workers,
        "threads": opts.threads,
        "idp_latency_ms": opts.idp_latency_ms,
        "medians": meds,
        "runs": [asdict(r) for r in results],
        **(verdict or {}),
    }
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
