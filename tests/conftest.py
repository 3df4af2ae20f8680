"""Shared test helpers: the CLI as a real subprocess, temporary SQLite files, real servers.

Tests that need PostgreSQL or MariaDB skip with a reason when the server is absent, unless
``HPO_REQUIRE_SERVICES=1`` (set by ``.ci/run``) turns the skip into a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies"
PG_ADMIN_URL = os.environ.get("HPO_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN_URL = os.environ.get("HPO_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("HPO_STORAGE", None)
    env.pop("HPO_DASHBOARD_TOKEN", None)
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path | str = REPO, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """``python -m hpo.run ARGS`` in a fresh process; returns the finished process (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "hpo.run", *args],
        cwd=cwd,
        env=env if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    """A TCP port nothing listens on (at this instant) on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def popen_cli(*args: str, cwd: Path | str = REPO, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """``python -m hpo.run ARGS`` started in the background (text pipes for stdout and stderr)."""
    return subprocess.Popen(
        [sys.executable, "-m", "hpo.run", *args],
        cwd=cwd,
        env=env if env is not None else cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def popen_held(gate: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Like :func:`popen_cli`, but each trial waits at the start of its second epoch until the
    test creates ``gate/release`` (see ``tests/held_worker.py``)."""
    gate.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "held_worker.py"), str(gate), *args],
        cwd=REPO,
        env=env if env is not None else cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def held_trial(gate: Path, proc: subprocess.Popen, timeout: float = 300) -> int:
    """The number of the first trial waiting at ``gate`` (RUNNING, its first epoch reported)."""

    def arrived():
        if proc.poll() is not None:
            pytest.fail(f"the worker exited with {proc.returncode} before a trial reached the gate: {proc.stderr.read()[-2000:]}")
        found = sorted(gate.glob("running-*"))
        return found[0] if found else None

    return int(wait_for(arrived, timeout, "a trial at the gate").name.split("-")[1])


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns something true (returned), or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hpo.db'}"


def _service_missing(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
    if os.environ.get("HPO_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " and HPO_REQUIRE_SERVICES=1")
    pytest.skip(message)


def _fresh_database(admin_url: str, what: str, quote: str, drop_options: str = "", **engine_kwargs):
    """Create a uniquely named database on a real server, yield its URL, drop it afterwards."""
    import sqlalchemy

    name = f"hpo_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(admin_url, connect_args={"connect_timeout": 5}, **engine_kwargs)
    try:
        with admin.connect() as c:
            c.execute(sqlalchemy.text(f"CREATE DATABASE {quote}{name}{quote}"))
    except Exception as e:  # noqa: BLE001
        admin.dispose()
        _service_missing(f"{what} at " + admin_url.split("@")[-1], e)
    yield admin_url.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{drop_options}"))
    admin.dispose()


@pytest.fixture
def postgres_url() -> str:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    yield from _fresh_database(PG_ADMIN_URL, "PostgreSQL", '"', " WITH (FORCE)", isolation_level="AUTOCOMMIT")


@pytest.fixture
def mysql_url() -> str:
    """A fresh MariaDB/MySQL database for this test, dropped afterwards."""
    yield from _fresh_database(MYSQL_ADMIN_URL, "MariaDB", "`")
