"""Security: the dashboard listens on this machine only unless told otherwise, and a storage
password (on the command line or in ``HPO_STORAGE``) appears in no output of any command and in
no file a command writes."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus

import optuna
import pytest

from tests.conftest import PG_ADMIN_URL, STUDIES, cli_env, free_port, popen_cli, run_cli

TINY = str(STUDIES / "tiny.toml")
DIGITS = ("--set", "data.dataset=digits", "--set", "objective.max_epochs=1")


def stop(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    """SIGTERM, as a service manager stops a server; the finished process with its output."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def wait_until_listening(proc: subprocess.Popen, port: int, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            done = stop(proc)
            pytest.fail(f"{proc.args[3]} exited with {done.returncode}: {done.stderr[-2000:]}")
        if answers("127.0.0.1", port):
            return
        time.sleep(0.3)
    stop(proc)
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (what ``ss -ltn`` shows)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(_address(address))
    return found


def other_local_addresses() -> list[str]:
    """Addresses of this machine a server bound to 127.0.0.1 must not answer on: another
    loopback address and, if the machine has one, its address on the network."""
    found = ["127.0.0.2"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
            own = s.getsockname()[0]
        except OSError:
            own = None
    if own and not own.startswith("127."):
        found.append(own)
    return found


@pytest.fixture
def sqlite_with_a_study(sqlite_url: str) -> str:
    storage = optuna.storages.RDBStorage(sqlite_url)
    optuna.create_study(storage=storage, study_name="seen")
    storage.engine.dispose()
    return sqlite_url


def test_dashboard_listens_on_127_0_0_1_unless_told_otherwise(sqlite_with_a_study: str) -> None:
    port = free_port()
    proc = popen_cli("dashboard", "--storage", sqlite_with_a_study, "--port", str(port))
    try:
        wait_until_listening(proc, port)
        assert listening_addresses(port) == {"127.0.0.1"}
        for address in other_local_addresses():
            assert not answers(address, port), address
    finally:
        out = stop(proc)
    assert f"on http://127.0.0.1:{port}/" in out.stdout

    port = free_port()
    proc = popen_cli("dashboard", "--storage", sqlite_with_a_study, "--port", str(port), "--host", "0.0.0.0")
    try:
        wait_until_listening(proc, port)
        assert listening_addresses(port) == {"0.0.0.0"}
        for address in other_local_addresses():
            assert answers(address, port), address
        with urllib.request.urlopen(f"http://{other_local_addresses()[-1]}:{port}/api/studies", timeout=10) as r:
            assert b'"seen"' in r.read()
    finally:
        stop(proc)


# --------------------------------------------------------------------------------------------
# A password-bearing URL to a real PostgreSQL database


@pytest.fixture
def password_url(postgres_url: str):
    """A fresh database owned by a new role with a password; the URL carries the password.

    The password holds the characters URLs treat specially, percent-encoded in the URL.  (The
    server's trust authentication accepts any password: what matters here is that the password
    is in the URL hpo is given.)"""
    import sqlalchemy

    role, password = f"hpo_role_{uuid.uuid4().hex[:8]}", f"Pw@:/?#%+ é&=-{uuid.uuid4().hex[:12]}"
    database = postgres_url.rsplit("/", 1)[1]
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"))
        c.execute(sqlalchemy.text(f'ALTER DATABASE "{database}" OWNER TO "{role}"'))
    host = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg2://{role}:{quote(password, safe='')}@{host}/{database}", password
    finally:
        inside = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with inside.connect() as c:  # the tables the role made, and the database itself
            c.execute(sqlalchemy.text(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER'))
        inside.dispose()
        with admin.connect() as c:
            c.execute(sqlalchemy.text(f'DROP ROLE "{role}"'))
        admin.dispose()


def test_hpo_storage_is_used_when_storage_is_absent(password_url, tmp_path: Path) -> None:
    url, password = password_url
    storage = optuna.storages.RDBStorage(url)
    optuna.create_study(storage=storage, study_name="from_env")
    storage.engine.dispose()
    out = run_cli("list", cwd=tmp_path, env=cli_env(HPO_STORAGE=url))
    assert out.returncode == 0, out.stderr
    assert "from_env" in out.stdout
    assert password not in out.stdout + out.stderr
    assert list(tmp_path.iterdir()) == []  # not the default SQLite file


def test_no_command_shows_or_writes_the_password(password_url, tmp_path: Path) -> None:
    """Every command, its successes and its errors, with the password in --storage or in
    HPO_STORAGE: the password is in no stdout, no stderr and no file written where it ran."""
    url, password = password_url
    bad_db = url.rsplit("/", 1)[0] + "/hpo_absent_db"
    refused = url.replace(url.split("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{free_port()}")
    env = cli_env(HPO_STORAGE=url)
    outputs: dict[str, subprocess.CompletedProcess] = {}

    def run(name: str, *args: str, code: int = 0, env: dict[str, str] | None = None) -> None:
        out = run_cli(*args, cwd=tmp_path, env=env, timeout=600)
        outputs[name] = out
        assert out.returncode == code, f"{name}: {out.stdout[-1000:]} {out.stderr[-2000:]}"

    run("study", "study", TINY, "--storage", url, "--n-trials", "1", *DIGITS, "--artifact-dir", "art")
    run("study --workers", "study", TINY, "--workers", "2", "--n-trials", "2", *DIGITS, "--artifact-dir", "art", env=env)
    run("list", "list", "--storage", url)
    run("report", "report", "tiny", "--out", "report", "--artifact-dir", "art", env=env)
    for command in ("dashboard", "proxy"):
        port = free_port()
        server = popen_cli(command, "--storage", url, "--port", str(port), cwd=tmp_path)
        wait_until_listening(server, port)
        if command == "dashboard":
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=30) as r:
                (tmp_path / "served.json").write_bytes(r.read())  # grepped with the files below
        outputs[command] = stop(server)
        assert outputs[command].returncode == 143, outputs[command].stderr[-2000:]  # SIGTERM, as a service manager stops it
    # the error paths: another objective, a missing database, a closed port, --debug, a usage error
    run("resume mismatch", "study", TINY, "--storage", url, *DIGITS, "--set", "objective.target=0.5", code=2)
    run("missing database", "list", "--storage", bad_db, code=2)
    run("closed port", "study", TINY, *DIGITS, code=2, env=cli_env(HPO_STORAGE=refused))
    run("--debug", "--debug", "report", "tiny", "--storage", bad_db, code=2)
    run("unknown study", "report", "nope", "--storage", url, code=2)
    run("usage error", "study", TINY, "--storage", url, "--workers", "0", code=2)

    assert "Traceback" in outputs["--debug"].stderr
    assert "***@" in outputs["study"].stdout and "***@" in outputs["missing database"].stderr
    for name, out in outputs.items():
        for form in (password, quote(password, safe=""), quote_plus(password)):
            assert form not in out.stdout + out.stderr, name
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "trials.csv" for p in written) and any(p.parent.name == "art" for p in written)
    for path in written:
        for form in (password, quote(password, safe=""), quote_plus(password)):
            assert form.encode() not in path.read_bytes(), path
