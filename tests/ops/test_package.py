"""The installed package carries its pages, static files and migrations (issue 10, item 1).

The wheel is built from this checkout and installed into a fresh virtual environment; its
dependencies come from the test environment's site-packages (no downloads). Everything then
runs from an empty folder, where no ``templates/`` or ``migrations/`` of the checkout can help.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300
#: What a copy of the checkout to build from leaves out.
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "instance", "__pycache__", ".*cache")
NOT_SOURCE += (".hypothesis", "test-results", "node_modules")


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, f"{args[:4]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel, install it into a fresh venv, and return that venv's python."""
    base = tmp_path_factory.mktemp("package")
    dist = base / "dist"
    # Built from a copy, so no build/ left over from an earlier build can slip into the wheel.
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    _run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), "."],
        cwd=source,
    )
    (wheel,) = dist.glob("portal-*.whl")
    target = base / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], base)
    # The dependencies: the test environment's site-packages, after the venv's own (where
    # the wheel's portal is). A plain path line, so its editable-install hook never runs.
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base
    )
    Path(purelib.strip(), "portal-test-deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    return python


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "FLASK_"))}
    env.pop("PYTHONPATH", None)
    env.update(
        DATABASE_URL=f"sqlite:///{folder / 'portal.sqlite3'}",
        PORTAL_INSTANCE_PATH=str(folder / "instance"),
        FLASK_APP="portal",
    )
    return env


RENDER = """
from portal import create_app
import portal
app = create_app()
client = app.test_client()
login = client.get("/login")
print(portal.__file__)
print(login.status_code, b"Sign in" in login.data)
style = client.get("/static/style.css")
print(style.status_code, len(style.data))
print(client.get("/readyz").status_code)
"""


def test_the_installed_wheel_migrates_and_serves_pages_from_an_empty_folder(installed, tmp_path):
    """`flask db upgrade` and `/login` work from a folder with nothing of the checkout in it."""
    folder = tmp_path / "empty"
    folder.mkdir()
    env = _env(folder)
    _run([str(installed), "-m", "flask", "db", "upgrade"], folder, env)
    lines = _run([str(installed), "-c", RENDER], folder, env).splitlines()[-4:]
    location, login, style, ready = lines
    assert not location.startswith(str(ROOT)), f"imported the checkout: {location}"
    assert "site-packages" in location
    assert login == "200 True"
    assert style.startswith("200 ") and int(style.split()[1]) > 0
    assert ready == "200", "the migrated database is at the head the package ships"


def test_every_subpackage_of_portal_is_listed_for_the_wheel():
    """A package folder under portal/ left out of pyproject.toml would be missing once installed."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "portal").rglob("__init__.py")
    }
    assert on_disk - listed == set()
