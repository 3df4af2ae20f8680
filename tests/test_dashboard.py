"""``python -m hpo.run dashboard``: in a real headless Chromium (the study, its note, a trial table
whose rows are one line high, a trial's outcome in sight, an artifact, the access token's cookie, a
rebound name refused), and over real HTTP: only this server's
``Host`` names are answered, the token is required when set, cross-site writes are refused, a port
another server holds is refused, and signals end it with 130 and 143.

The browser test needs Debian's ``chromium`` and the ``playwright`` Python package (its own browser
download is not used).  Without them it skips, unless ``HPO_REQUIRE_SERVICES=1`` makes that a failure.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest

from tests.conftest import STUDIES, cli_env, free_port, popen_cli, run_cli

TOKEN = "t0ken-for-the-dashboard-TEST_1"  # URL-safe, as a generated one is

CHROMIUM = os.environ.get("HPO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Where the user attribute ``key`` is on a trial page: its line, the box it scrolls in, whether it
# is in sight (inside the box and the window) without scrolling either.
IN_SIGHT = """key => {
  const line = [...document.querySelectorAll("p")].find(p => p.textContent.startsWith(key + " "));
  if (!line) return null;
  let box = line.parentElement;
  while (box && !["auto", "scroll"].includes(getComputedStyle(box).overflowY)) box = box.parentElement;
  const r = line.getBoundingClientRect(), b = box.getBoundingClientRect();
  return {top: r.top, bottom: r.bottom, box: [b.top, b.bottom], seen: r.top >= b.top && r.bottom <= b.bottom && r.bottom <= innerHeight};
}"""
ONE_LINE_ROW = 80  # px: a row of one line of text beside its Detail button is 67 px, two lines are ~87


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


def _wait_for(url: str, proc: subprocess.Popen, seconds: float = 60, token: str | None = None) -> None:
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dashboard exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2):
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
        env=cli_env(HPO_DASHBOARD_TOKEN=TOKEN),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(base + "/api/studies", server, token=TOKEN)
        yield {"base": base, "port": port, "url": url, "art": str(art)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_dashboard_in_a_real_browser(dashboard):
    sync_playwright = _browser_or_skip()
    base = dashboard["base"]
    with sync_playwright() as p:
        # evil.test: a name its owner rebinds to this machine, as a DNS-rebinding page does
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP evil.test 127.0.0.1"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            assert page.goto(base + "/dashboard").status == 401  # no token yet
            response = page.goto(base + f"/dashboard?token={TOKEN}")  # the URL printed: sets the cookie, drops the token
            assert response.status == 200 and page.url == base + "/dashboard"
            page.get_by_text("browse").first.wait_for(timeout=30_000)  # the study list: "1. browse"

            page.goto(base + "/dashboard/studies/1/note")  # the note hpo wrote when it created the study
            page.get_by_text("browse: epochs to").wait_for(timeout=30_000)
            page.get_by_text("Search space").wait_for(timeout=30_000)
            page.get_by_text("step s is the cost after epoch s + 1").wait_for(timeout=30_000)  # the Step axis

            # the trial table (Smart Selection): one line per trial, the history kept out of it
            page.goto(base + "/dashboard/studies/1/smartSelection")
            page.get_by_text("UserAttribute stop_reason").wait_for(timeout=30_000)
            rows = page.locator("tbody tr")
            heights = rows.evaluate_all("rows => rows.map(r => r.getBoundingClientRect().height)")
            assert len(heights) == 2 and max(heights) <= ONE_LINE_ROW, heights
            assert page.get_by_text("UserAttribute history").count() == 0

            # a trial's page: its outcome leads the user attributes' box, in sight without scrolling
            page.goto(base + "/dashboard/studies/1/trials?numbers=1")
            page.get_by_text("Trial 1 (trial_id=2)").wait_for(timeout=30_000)
            page.get_by_text("stop_reason ").first.wait_for(timeout=30_000)
            for key in ("stop_reason", "epochs_to_target", "best_val_accuracy", "n_params", "seconds"):
                where = page.evaluate(IN_SIGHT, key)
                assert where is not None and where["seen"], (key, where)
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 1400  # no line wider than the window

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

            # a write from the dashboard's own page passes the Origin check (the browser sends it)
            made = page.evaluate(
                """async () => (await fetch("/api/studies", {method: "POST", headers: {"Content-Type": "application/json"},
                    body: JSON.stringify({study_name: "from-the-page", directions: ["minimize"]})})).status"""
            )
            assert made == 201
            assert _studies(dashboard["url"]) == ["browse", "from-the-page"]
            # the same server under a rebound name: refused before the dashboard sees the request
            rebound = page.goto(f"http://evil.test:{dashboard['port']}/dashboard")
            assert rebound.status == 403
            assert "this server does not answer to that Host" in page.content()
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


# --------------------------------------------------------------------------------------------
# The guard, over real HTTP: a study made by plain Optuna, served with a token and --allow-host


def test_the_study_data_lists_each_trial_s_outcome_first(dashboard):
    """What the browser test sees, in the JSON optuna-dashboard sends: the outcome first, then the
    other user attributes as stored; JSON values without the spaces a table cell wraps at."""
    request = urllib.request.Request(dashboard["base"] + "/api/studies/1", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
        assert int(response.headers["Content-Length"]) == len(body)
    detail = json.loads(body)
    first = ["stop_reason", "epochs_to_target", "best_val_accuracy", "n_params", "seconds", "epochs"]
    assert [a["key"] for a in detail["union_user_attrs"]][:6] == first
    stored = optuna.load_study(study_name="browse", storage=dashboard["url"]).trials
    assert len(detail["trials"]) == len(stored) == 2
    for shown, trial in zip(detail["trials"], stored, strict=True):
        keys = [a["key"] for a in shown["user_attrs"]]
        assert keys[:6] == first and sorted(keys) == sorted(trial.user_attrs) and "history" not in keys
        fixed = next(a["value"] for a in shown["user_attrs"] if a["key"] == "fixed_params")
        assert " " not in fixed and json.loads(fixed) == trial.user_attrs["fixed_params"]


def _studies(url: str) -> list[str]:
    """The study names in an SQLite storage, read without the dashboard (read-only)."""
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [name for (name,) in db.execute("SELECT study_name FROM studies ORDER BY study_id")]


def _call(
    port: int,
    method: str = "GET",
    path: str = "/api/studies",
    *,
    host: str | None = "",
    token: str | None = None,
    headers: dict[str, str] | None = None,
    body: dict | None = None,
    address: str = "127.0.0.1",
) -> tuple[int, http.client.HTTPResponse, str]:
    """One request; ``host=""`` sends ``Host: ADDRESS:PORT`` (as a browser does), None no Host header."""
    conn = http.client.HTTPConnection(address, port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host or f"{address}:{port}")
        if token is not None:
            conn.putheader("Authorization", f"Bearer {token}")
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        data = json.dumps(body).encode() if body is not None else b""
        if body is not None:
            conn.putheader("Content-Type", "application/json")
        if method not in ("GET", "HEAD"):
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data or None)
        response = conn.getresponse()
        return response.status, response, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _wait_listening(proc: subprocess.Popen, port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dashboard exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def _stop(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> subprocess.CompletedProcess:
    if proc.poll() is None:
        proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An SQLite storage with one study of one trial, made by plain Optuna (no training)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('plain') / 'plain.db'}"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name="kept")
    study.add_trial(
        optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)}, value=1.0)
    )
    storage.engine.dispose()
    return url


@pytest.fixture(scope="module")
def guarded(plain: str):
    """The dashboard over ``plain``, its token from HPO_DASHBOARD_TOKEN, ``--allow-host dash.example``."""
    port = free_port()
    proc = popen_cli(
        "dashboard",
        "--storage",
        plain,
        "--port",
        str(port),
        "--allow-host",
        "dash.example",
        env=cli_env(HPO_DASHBOARD_TOKEN=TOKEN),
    )
    try:
        _wait_listening(proc, port)
        yield {"port": port, "url": plain, "proc": proc}
    finally:
        _stop(proc)


FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:{port}",
    "127.0.0.1.evil.example:{port}",  # a name that starts like an allowed one
    "localhost.evil.example",
    "dash.example.evil.example",
    "127.0.0.2:{port}",  # a loopback address other than the one bound
    "0.0.0.0:{port}",
    "127.0.0.1@evil.example",
    "127.0.0.1%evil.example:{port}",
    "[::1%25evil.example]:{port}",
    "evil.example/127.0.0.1",
    "",  # an empty Host header
    None,  # none at all
]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_foreign_host_is_refused_before_the_dashboard_sees_it(guarded, method: str) -> None:
    """DNS rebinding: a page on a name its owner resolves to 127.0.0.1 sends its own name as Host.
    With the right token too, nothing reaches the dashboard: the study is still stored."""
    port = guarded["port"]
    for host in FOREIGN_HOSTS:
        shown = host.format(port=port) if host is not None else None
        path = "/api/studies/1" if method == "DELETE" else "/api/studies"
        status, response, text = _call(port, method, path, host=shown if shown != "" else " ", token=TOKEN)
        assert (status, text) == (403, "403 Forbidden: this server does not answer to that Host header\n"), shown
        assert response.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert _studies(guarded["url"]) == ["kept"]


ALLOWED_HOSTS = [
    "127.0.0.1:{port}",
    "localhost:{port}",
    "LocalHost:{port}",  # names are case-insensitive
    "localhost.:{port}",  # the fully qualified form
    "[::1]:{port}",
    "[0:0:0:0:0:0:0:1]:{port}",
    "localhost:9000",  # behind ssh -L 9000:127.0.0.1:PORT the browser names the tunnel's port
    "127.0.0.1",
    "dash.example",  # --allow-host: a reverse proxy's name
    "dash.example:443",
    "DASH.example.:8443",
]


def test_the_names_of_this_server_are_answered(guarded) -> None:
    port = guarded["port"]
    for host in ALLOWED_HOSTS:
        status, _, text = _call(port, host=host.format(port=port), token=TOKEN)
        assert status == 200, (host, text)
        assert [s["study_name"] for s in json.loads(text)["study_summaries"]] == ["kept"], host


def test_every_request_needs_the_token(guarded) -> None:
    port = guarded["port"]
    for kind, headers in [
        ("none", {}),
        ("wrong", {"Authorization": "Bearer " + TOKEN[:-1] + "X"}),
        ("longer", {"Authorization": f"Bearer {TOKEN}x"}),
        ("a prefix", {"Authorization": f"Bearer {TOKEN[:16]}"}),
        ("basic", {"Authorization": f"Basic {TOKEN}"}),
        ("not ASCII", {"Authorization": "Bearer t\u00f6ken"}),
        ("the token as cookie", {"Cookie": f"hpo_dashboard_{port}={TOKEN}"}),  # the cookie holds no token
        ("another port's cookie", {"Cookie": f"hpo_dashboard_{port + 1}=0"}),
    ]:
        for method, path in [("GET", "/api/studies"), ("GET", "/dashboard"), ("DELETE", "/api/studies/1")]:
            status, response, text = _call(port, method, path, headers=headers)
            assert status == 401, (kind, method, path)
            assert text.startswith("401 Unauthorized: open http://HOST:PORT/?token=TOKEN once")
            assert response.getheader("WWW-Authenticate") == 'Bearer realm="hpo dashboard"'
    assert _studies(guarded["url"]) == ["kept"]
    assert _call(port, token=TOKEN)[0] == 200
    assert _call(port, headers={"Authorization": f"bearer  {TOKEN}"})[0] == 200  # the scheme is case-insensitive


def test_opening_the_printed_url_sets_a_cookie_once(guarded) -> None:
    port = guarded["port"]
    # a wrong token in the URL: no cookie
    status, response, _ = _call(port, path="/?token=not-the-token-at-all")
    assert status == 401 and response.getheader("Set-Cookie") is None

    status, response, _ = _call(port, path=f"/dashboard/studies/1?x=1&token={TOKEN}&y=%2F")
    assert status == 303
    assert response.getheader("Location") == "/dashboard/studies/1?x=1&y=%2F"  # the same URL, without the token
    cookie = response.getheader("Set-Cookie")
    name_value, *attributes = [part.strip() for part in cookie.split(";")]
    assert set(attributes) == {"Path=/", "HttpOnly", "SameSite=Strict"}
    name, value = name_value.split("=", 1)
    assert name == f"hpo_dashboard_{port}" and TOKEN not in value  # one cookie per port; not the token itself
    assert _call(port, headers={"Cookie": f"other=1; {name_value}"})[0] == 200
    assert _call(port, "DELETE", "/api/studies/99", headers={"Cookie": name_value})[0] == 404  # reaches the dashboard

    # a path that a browser would read as another site's address stays a path on this server
    status, response, _ = _call(port, path=f"//evil.example/x?token={TOKEN}")
    assert status == 303 and response.getheader("Location") == "/evil.example/x"
    # the token in the URL of a write sets nothing (a write needs the header or the cookie)
    status, response, _ = _call(port, "DELETE", f"/api/studies/1?token={TOKEN}")
    assert status == 401 and response.getheader("Set-Cookie") is None
    assert _studies(guarded["url"]) == ["kept"]


def test_cross_site_writes_are_refused(guarded) -> None:
    """A page of another site can make a browser send a POST (a form, ``fetch`` with ``no-cors``) to
    127.0.0.1 under this server's own Host: its Origin header gives it away."""
    port = guarded["port"]
    new = {"study_name": "made", "directions": ["minimize"]}
    for origin in ["http://evil.example", f"http://evil.example:{port}", "null", f"http://127.0.0.1:{port + 1}",
                   f"http://localhost:{port}", "file://", "http://[::1", "javascript:alert(1)"]:  # fmt: skip
        for method, path, body in [
            ("POST", "/api/studies", new),
            ("DELETE", "/api/studies/1", None),
            ("PUT", "/api/studies/1/note", {}),
        ]:
            status, _, text = _call(port, method, path, token=TOKEN, headers={"Origin": origin}, body=body)
            assert (status, text) == (403, "403 Forbidden: a change sent by a page of another site\n"), (origin, method)
    assert _studies(guarded["url"]) == ["kept"]

    # the dashboard's own page; a reverse proxy's (--allow-host) that rewrote Host; a script (no Origin)
    made = []
    for name, origin in [("made", f"http://127.0.0.1:{port}"), ("made2", "https://dash.example")]:
        body = {"study_name": name, "directions": ["minimize"]}
        status, _, text = _call(port, "POST", "/api/studies", token=TOKEN, headers={"Origin": origin}, body=body)
        assert status == 201, text
        made.append(json.loads(text)["study_summary"]["study_id"])
    assert _studies(guarded["url"]) == ["kept", "made", "made2"]
    for study_id in made:
        assert _call(port, "DELETE", f"/api/studies/{study_id}", token=TOKEN)[0] == 204
    assert _studies(guarded["url"]) == ["kept"]


# --------------------------------------------------------------------------------------------
# Serving: --token, every interface, signals, a port another server holds


def _own_address() -> str | None:
    """This machine's address on its network, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
            own = s.getsockname()[0]
        except OSError:
            return None
    return None if own.startswith("127.") else own


def test_token_flag_every_interface_a_taken_port_and_signals(plain: str) -> None:
    """Two dashboards: one with ``--token`` (and another token in HPO_DASHBOARD_TOKEN) on loopback,
    stopped with Ctrl-C's SIGINT: 130; one on every interface without a token (a warning), stopped
    with SIGTERM: 143."""
    loop_port, all_port = free_port(), free_port()
    no_token = cli_env()
    no_token.pop("HPO_DASHBOARD_TOKEN", None)
    loop = popen_cli(
        "dashboard",
        "--storage",
        plain,
        "--port",
        str(loop_port),
        "--token",
        TOKEN + "-flag",
        env=cli_env(HPO_DASHBOARD_TOKEN=TOKEN),
    )
    every = popen_cli("dashboard", "--storage", plain, "--port", str(all_port), "--host", "0.0.0.0", env=no_token)
    try:
        _wait_listening(loop, loop_port)
        _wait_listening(every, all_port)
        assert _call(loop_port)[0] == 401
        assert _call(loop_port, token=TOKEN)[0] == 401  # --token wins over HPO_DASHBOARD_TOKEN
        assert _call(loop_port, token=TOKEN + "-flag")[0] == 200

        # every interface: no token needed; this machine's names and the address connected to are answered
        assert _call(all_port)[0] == 200
        assert _call(all_port, host=f"{socket.gethostname()}:{all_port}")[0] == 200
        own = _own_address()
        if own is not None:
            assert _call(all_port, address=own)[0] == 200
            assert _call(all_port, address=own, host=f"evil.example:{all_port}")[0] == 403
        assert _call(all_port, host=f"evil.example:{all_port}")[0] == 403
        assert _call(all_port, host=f"\x1b[2J\x1b[31mhpo: error: forged:{all_port}")[0] == 403  # shown escaped, below
        assert _call(all_port, "POST", "/api/studies", headers={"Origin": "http://evil.example"}, body={})[0] == 403

        # the port of a running dashboard (any address that overlaps it) is refused in one line
        for host in ("127.0.0.1", "0.0.0.0"):
            taken = run_cli("dashboard", "--storage", plain, "--host", host, "--port", str(all_port), timeout=30)
            assert (taken.returncode, taken.stdout) == (2, "")
            assert taken.stderr.splitlines() == [f"hpo: error: cannot listen on {host}:{all_port}: Address already in use"]
        # neither listens with SO_REUSEPORT: no other socket can share their ports with it
        for port in (loop_port, all_port):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                with pytest.raises(OSError, match="in use"):
                    s.bind(("127.0.0.1", port))
    finally:
        loop_done = _stop(loop, signal.SIGINT)
        every_done = _stop(every, signal.SIGTERM)
    assert loop_done.returncode == 130, loop_done.stderr[-2000:]
    assert every_done.returncode == 143, every_done.stderr[-2000:]
    assert loop_done.stdout.startswith(f"optuna-dashboard on http://127.0.0.1:{loop_port}/?token={TOKEN}-flag for {plain}")
    assert every_done.stdout.startswith(f"optuna-dashboard on http://0.0.0.0:{all_port}/ for {plain}")
    assert [line for line in loop_done.stderr.splitlines() if "no access token" in line] == []
    warnings = [line for line in every_done.stderr.splitlines() if line.startswith("hpo: warning: no access token")]
    assert warnings == [
        f"hpo: warning: no access token: anyone who can reach 0.0.0.0:{all_port} can read and delete every study "
        "and artifact (set HPO_DASHBOARD_TOKEN or --token)"
    ]
    assert "\x1b" not in every_done.stderr and "'\\x1b[2J\\x1b[31mhpo: error: forged:" in every_done.stderr
    assert not any(line.startswith("hpo: error") for line in every_done.stderr.splitlines())
    assert "Traceback" not in loop_done.stderr + every_done.stderr
    assert _studies(plain) == ["kept"]


@pytest.mark.parametrize("grpc_host", ["127.0.0.1", "0.0.0.0"])
def test_a_port_a_grpc_server_holds_is_refused(plain: str, grpc_host: str) -> None:
    """gRPC listens with SO_REUSEPORT; the dashboard must not share its port (on any overlapping address)."""
    from optuna.storages._grpc.server import make_server

    port = free_port()
    server = make_server(optuna.storages.InMemoryStorage(), grpc_host, port)
    server.start()
    try:
        for host in ("127.0.0.1", "localhost", "0.0.0.0"):
            proc = run_cli("dashboard", "--storage", plain, "--host", host, "--port", str(port), timeout=30)
            assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr[-2000:]
            assert proc.stderr.splitlines() == [f"hpo: error: cannot listen on {host}:{port}: Address already in use"]
    finally:
        server.stop(0)
    assert _studies(plain) == ["kept"]
