"""``python -m hpo.run dashboard`` in a real headless Chromium: the study, its trials, an artifact.

Needs Debian's ``chromium`` and the ``playwright`` Python package (its own browser download is
not used).  Without them the test skips, unless ``HPO_REQUIRE_SERVICES=1`` makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import STUDIES, cli_env, run_cli

CHROMIUM = os.environ.get("HPO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _browser_or_skip():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package is not installed (pip install playwright)"
    if missing is None and not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        missing = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if missing:
        if os.environ.get("HPO_REQUIRE_SERVICES") == "1":
            pytest.fail(missing + " and HPO_REQUIRE_SERVICES=1")
        pytest.skip(missing)
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dashboard exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"dashboard did not answer at {url} within {seconds} s")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory):
    """A 2-trial study with artifacts (in the default folder, beside the SQLite file), served by
    ``hpo.run dashboard`` on a free port, started from another folder without --artifact-dir:
    it finds the artifacts where the study records them."""
    tmp_path = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{tmp_path / 'd.db'}"
    art = tmp_path / "artifacts"
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    proc = run_cli(
        "study", str(STUDIES / "quickstart.toml"), "--storage", url, "--study-name", "browse", "--n-trials", "2",
        "--no-progress",
        "--set", "data.train_size=500", "--set", "objective.max_epochs=1", "--set", "space.dense.layers=1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(art.iterdir())) >= 6  # two trials' curves, histories
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "hpo.run", "dashboard", "--storage", url, "--port", str(port)],
        cwd=elsewhere,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(base + "/api/studies", server)
        yield {"base": base, "port": port, "url": url, "art": str(art)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_dashboard_in_a_real_browser(dashboard):
    sync_playwright = _browser_or_skip()
    base = dashboard["base"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(base + "/dashboard")
            page.get_by_text("browse").first.wait_for(timeout=30_000)  # the study list: "1. browse"

            page.goto(base + "/dashboard/studies/1/note")  # the note hpo wrote when it created the study
            page.get_by_text("browse: epochs to").wait_for(timeout=30_000)
            page.get_by_text("Search space").wait_for(timeout=30_000)

            page.goto(base + "/dashboard/studies/1/trials")
            page.get_by_text("2 Trials").wait_for(timeout=30_000)
            page.get_by_text("trial-0000-curves.png").wait_for(timeout=30_000)
            image = page.locator("img[src*='/artifacts/']").first
            image.wait_for(timeout=30_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll(\"img[src*='/artifacts/']\")].some(i => i.complete && i.naturalWidth > 0)",
                timeout=30_000,
            )
            assert image.evaluate("i => i.naturalWidth") == 700  # the 7-inch, 100-dpi learning curve
        finally:
            browser.close()


def test_dashboard_port_taken_is_one_line(dashboard):
    proc = run_cli(
        "dashboard",
        "--storage",
        dashboard["url"],
        "--artifact-dir",
        dashboard["art"],
        "--port",
        str(dashboard["port"]),
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"hpo: error: cannot listen on 127.0.0.1:{dashboard['port']}: Address already in use"
    ]


def test_dashboard_with_a_missing_artifact_dir_is_one_line_and_creates_nothing(dashboard, tmp_path):
    missing = tmp_path / "no" / "such"
    proc = run_cli(
        "dashboard", "--storage", dashboard["url"], "--artifact-dir", str(missing), "--port", str(_free_port()), timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"hpo: error: --artifact-dir: no folder {str(missing)!r}"]
    assert not (tmp_path / "no").exists()
