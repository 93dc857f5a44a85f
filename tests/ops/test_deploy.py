"""deploy/: the example settings list every setting, and the nginx and systemd files are valid."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
#: A setting read from the environment: env.get("X"), _flag(env.get("X")), _float(env, "X"...).
_READ = re.compile(r'(?:env|environ)(?:\.get\(|\[|, )"([A-Z][A-Z0-9_]+)"')
#: Read by the WSGI server, not settings (os.environ in a WSGI handler).
_NOT_SETTINGS = {"HTTP_AUTHORIZATION", "PATH_INFO", "REQUEST_METHOD"}


def settings_read() -> set[str]:
    """Every variable portal/ (the demo provider aside) and gunicorn.conf.py read."""
    sources = [ROOT / "gunicorn.conf.py"] + [
        path for path in (ROOT / "portal").rglob("*.py") if "devidp" not in path.parts
    ]
    names = set()
    for path in sources:
        names |= set(_READ.findall(path.read_text()))
    return names - _NOT_SETTINGS


def test_the_example_environment_lists_every_setting():
    """A setting added to portal/config.py (or gunicorn.conf.py) without an example line fails."""
    example = (DEPLOY / "portal.env.example").read_text()
    listed = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    read = settings_read()
    assert {"SECRET_KEY", "PORTAL_METRICS_TOKEN", "PORTAL_WORKERS"} <= read
    assert read - listed == set()
    assert listed - read == set(), "the example names a setting nothing reads"


def test_the_example_environment_holds_no_secret():
    """The secrets are left empty to be generated, never a usable value to copy."""
    example = (DEPLOY / "portal.env.example").read_text()
    for name in ("SECRET_KEY", "PORTAL_ENCRYPTION_KEYS", "PORTAL_METRICS_TOKEN"):
        assert re.search(rf"^{name}=$", example, re.MULTILINE), name


def _self_signed(folder: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portal.example.org")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (folder / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


#: CI installs nginx (`make nginx`): there a missing nginx fails instead of skipping.
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@pytest.mark.skipif(
    not NGINX and os.environ.get("CI") != "true", reason="nginx (Debian's package) is not installed"
)
@pytest.mark.parametrize("site", ["portal.conf", "compose.conf"])
def test_the_nginx_site_passes_nginx_t(tmp_path, site):
    """`nginx -t` accepts the site as shipped, paths moved into a scratch folder."""
    _self_signed(tmp_path)
    text = (DEPLOY / "nginx" / site).read_text()
    text = (
        text.replace("/etc/letsencrypt/live/portal.example.org/", f"{tmp_path}/")
        .replace("/etc/nginx/certs/", f"{tmp_path}/")
        .replace("/etc/nginx/snippets/portal-proxy.conf", str(DEPLOY / "nginx/portal-proxy.conf"))
        .replace("/var/log/nginx/", f"{tmp_path}/")
        .replace("server portal:8000", "server 127.0.0.1:8000")  # compose's service name
    )
    (tmp_path / "site.conf").write_text(text)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/site.conf;\n}}\n"
    )
    done = subprocess.run(
        [NGINX or "nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_the_nginx_site_never_logs_a_query_and_sets_the_forwarded_headers():
    """The proxy sets (never appends) what PORTAL_TRUST_PROXY reads; the log uses $uri."""
    proxy = (DEPLOY / "nginx" / "portal-proxy.conf").read_text()
    for header, value in [
        ("X-Forwarded-For", "$remote_addr"),
        ("X-Forwarded-Proto", "$scheme"),
        ("X-Forwarded-Host", "$host"),
        ("X-Forwarded-Port", "$server_port"),
        ("X-Request-ID", "$request_id"),
    ]:
        assert f"proxy_set_header {header} {value};" in proxy
    for site in ("portal.conf", "compose.conf"):
        text = (DEPLOY / "nginx" / site).read_text()
        log_format = re.search(r"log_format portal_noquery (.*?);", text, re.DOTALL).group(1)
        assert "$uri" in log_format
        for leaky in ("$request ", "$request_uri", "$args", "$query_string", "$http_referer"):
            assert leaky not in log_format
        assert re.findall(r"access_log (\S+) (\S+);", text)[0][1] == "portal_noquery"


@pytest.mark.skipif(
    not shutil.which("systemd-analyze") and os.environ.get("CI") != "true",
    reason="systemd-analyze is not here (CI has it: there a missing one fails)",
)
def test_the_systemd_units_verify(tmp_path):
    """`systemd-analyze verify` finds nothing to say (binaries pointed at this venv)."""
    bin_dir = str(Path(sys.executable).parent) + "/"
    units = []
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        target = tmp_path / unit.name
        target.write_text(unit.read_text().replace("/opt/portal/venv/bin/", bin_dir))
        units.append(str(target))
    done = subprocess.run(
        ["systemd-analyze", "verify", *units],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    complaints = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        # The portal user is created on the host (README); it does not exist here.
        if line.strip() and "portal" in line and "user" not in line.lower()
    ]
    assert complaints == []
    assert done.returncode == 0, done.stderr


def test_the_timer_runs_the_purge_commands_that_exist(runner):
    """The maintenance unit calls CLI commands Portal really has."""
    unit = (DEPLOY / "systemd" / "portal-maintenance.service").read_text()
    commands = re.findall(r"^ExecStart=\S+/flask (.+)$", unit, re.MULTILINE)
    assert commands == ["audit purge", "sso purge-attempts --older-than-hours 24"]
    for command in commands:
        result = runner.invoke(args=[*command.split(), "--help"])
        assert result.exit_code == 0, result.output
