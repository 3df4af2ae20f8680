"""Storages: work lands only in the storage the user meant, and reading never writes.

Reading commands (``list``, ``report``, ``dashboard``) open storages without creating tables or
changing the journal mode (read-only connections for ``list`` and ``report``); only ``study``
creates tables, in an empty database, and switches an SQLite file to its write-ahead log once the
study's checks passed.  A study another program made is joined only while empty.  Every case is a
real CLI run on a real SQLite file or database server, compared byte for byte (SQLite) or table by
table (servers) before and after.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from hpo.errors import StorageError
from hpo.storage import EmptyStorage, check_sqlite_file, make_storage, resolve_url
from tests.conftest import STUDIES, cli_env, free_port, popen_cli, run_cli
from tests.test_worker import read_only

TINY = str(STUDIES / "tiny.toml")
DIGITS = ("--set", "data.dataset=digits", "--set", "objective.max_epochs=1", "--no-progress", "--no-artifacts")


def digest(folder: Path) -> dict[str, str]:
    """Every file of ``folder`` (journals and write-ahead logs included) by content."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def journal_mode(path: Path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        return c.execute("PRAGMA journal_mode").fetchone()[0]


def one_error_line(out: subprocess.CompletedProcess, *needles: str) -> str:
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-3000:]
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpo: error: "), text[-3000:]
    assert "Traceback" not in text
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def plain_optuna_file(path: Path, *, direction: str = "minimize", trials: int = 2) -> None:
    """A study file made by plain Optuna: rollback journal, one study named ``plain``."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(storage=storage, study_name="plain", direction=direction)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=trials)
    storage.engine.dispose()


def other_application_file(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO customers (name) VALUES ('a')")


def server_tables(url: str) -> list[str]:
    engine = sqlalchemy.create_engine(url)
    try:
        return sorted(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def hpo_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real hpo study (one digits trial) in its own folder, in the write-ahead-log mode hpo uses."""
    folder = tmp_path_factory.mktemp("hpo_study")
    out = run_cli("study", TINY, "--storage", f"sqlite:///{folder / 'hpo.db'}", "--n-trials", "1", *DIGITS)
    assert out.returncode == 0, out.stderr[-2000:]
    assert journal_mode(folder / "hpo.db") == "wal"
    return folder


# --------------------------------------------------------------------------------------------
# Reading never writes


@pytest.mark.parametrize(
    ("command", "needles"),
    [
        (("list",), ("is no Optuna storage", "customers")),
        (("report", "tiny"), ("is no Optuna storage",)),
        (("dashboard", "--port", "$port"), ("is no Optuna storage",)),
        (("study", TINY, *DIGITS), ("is no Optuna storage",)),  # nor is it made one
    ],
    ids=["list", "report", "dashboard", "study"],
)
def test_sqlite_file_of_another_application_is_refused_and_unchanged(command, needles, tmp_path: Path) -> None:
    other_application_file(tmp_path / "app.db")
    before = digest(tmp_path)
    argv = [str(free_port()) if a == "$port" else a for a in command]
    one_error_line(run_cli(*argv, "--storage", f"sqlite:///{tmp_path / 'app.db'}", cwd=tmp_path), *needles)
    assert digest(tmp_path) == before


def test_reading_a_plain_optuna_file_keeps_its_rollback_journal(tmp_path: Path) -> None:
    plain_optuna_file(tmp_path / "plain.db")
    before = digest(tmp_path)
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    listed = run_cli("list", "--storage", url, cwd=tmp_path)
    assert listed.returncode == 0 and "plain" in listed.stdout, listed.stderr
    one_error_line(run_cli("report", "missing", "--storage", url, cwd=tmp_path), "no study named 'missing'", "studies: plain")
    one_error_line(run_cli("report", "plain", "--storage", url, cwd=tmp_path), "was not created by hpo")
    assert digest(tmp_path) == before
    assert journal_mode(tmp_path / "plain.db") == "delete"


def test_an_empty_file_lists_no_studies_and_stays_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    listed = run_cli("list", "--storage", url, cwd=tmp_path)
    assert (listed.returncode, listed.stdout.strip()) == (0, f"no studies in {url}"), listed.stderr
    one_error_line(run_cli("report", "x", "--storage", url, cwd=tmp_path), f"no studies in {url}")
    assert [(p.name, p.stat().st_size) for p in tmp_path.iterdir()] == [("empty.db", 0)]


@pytest.mark.parametrize("server", ["postgres_url", "mysql_url"])
def test_an_empty_database_lists_no_studies_and_gets_no_tables(server: str, request) -> None:
    url = request.getfixturevalue(server)
    listed = run_cli("list", "--storage", url)
    assert (listed.returncode, listed.stdout.strip()) == (0, f"no studies in {url}"), listed.stderr
    one_error_line(run_cli("report", "x", "--storage", url), "no studies in")
    one_error_line(run_cli("dashboard", "--storage", url, "--port", str(free_port())), "no studies in")
    assert server_tables(url) == []


def test_read_connections_cannot_write_on_postgresql(postgres_url: str) -> None:
    """``list`` and ``report`` open PostgreSQL in read-only transactions: a write fails in the server."""
    writer = make_storage(postgres_url)
    study = optuna.create_study(storage=writer, study_name="s")
    reader = make_storage(postgres_url, mode="read")
    assert [s.study_name for s in optuna.get_all_study_summaries(reader)] == ["s"]
    with pytest.raises(optuna.exceptions.StorageInternalError) as refused:
        reader.set_study_user_attr(study._study_id, "k", 1)
    assert "read-only transaction" in str(refused.value.__cause__)
    assert study.user_attrs == {}
    for s in (writer, reader):
        s.engine.dispose()


def test_archived_study_on_read_only_media_is_readable(hpo_study: Path, tmp_path: Path) -> None:
    """A folder nothing can be written to (chattr +i for root): list and report read the study."""
    url = f"sqlite:///{hpo_study / 'hpo.db'}"
    before = digest(hpo_study)
    with read_only(hpo_study):
        listed = run_cli("list", "--storage", url, cwd=tmp_path)
        report = run_cli("report", "tiny", "--storage", url, "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert listed.returncode == 0 and "tiny" in listed.stdout, listed.stderr
    assert report.returncode == 0, report.stderr[-2000:]
    assert (tmp_path / "report" / "summary.md").is_file()
    assert digest(hpo_study) == before


def test_dashboard_serves_a_study_on_read_only_media(hpo_study: Path) -> None:
    import urllib.request

    url, port = f"sqlite:///{hpo_study / 'hpo.db'}", free_port()
    before = digest(hpo_study)
    with read_only(hpo_study):
        proc = popen_cli("dashboard", "--storage", url, "--port", str(port))
        try:
            deadline, body = time.monotonic() + 90, None
            while body is None and time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                        body = r.read().decode()
                except OSError:
                    time.sleep(0.3)
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
    assert body is not None and '"tiny"' in body, err[-2000:]
    assert digest(hpo_study) == before


def test_read_modes_never_create_tables_in_process(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    for mode in ("read", "browse"):
        with pytest.raises(EmptyStorage):
            make_storage(f"sqlite:///{tmp_path / 'empty.db'}", mode=mode)
    assert (tmp_path / "empty.db").stat().st_size == 0
    with pytest.raises(StorageError, match="no SQLite file"):
        make_storage(f"sqlite:///{tmp_path / 'none.db'}", mode="read")
    assert list(tmp_path.iterdir()) == [tmp_path / "empty.db"]
    with pytest.raises(ValueError, match="mode"):
        make_storage(f"sqlite:///{tmp_path / 'empty.db'}", mode="append")


# --------------------------------------------------------------------------------------------
# Writing: only after the checks


def test_study_refused_on_a_plain_optuna_file_leaves_it_as_it_was(tmp_path: Path) -> None:
    """Refused (a foreign study with trials): no tables, no write-ahead log, no settings."""
    plain_optuna_file(tmp_path / "plain.db")
    before = digest(tmp_path)
    out = run_cli("study", TINY, "--storage", f"sqlite:///{tmp_path / 'plain.db'}", "--study-name", "plain", *DIGITS)
    one_error_line(out, "study 'plain' was not created by hpo", "choose a new --study-name")
    assert digest(tmp_path) == before and journal_mode(tmp_path / "plain.db") == "delete"


def test_a_new_study_in_a_plain_optuna_file_switches_it_to_the_write_ahead_log(tmp_path: Path) -> None:
    plain_optuna_file(tmp_path / "plain.db")
    out = run_cli("study", TINY, "--storage", f"sqlite:///{tmp_path / 'plain.db'}", "--n-trials", "0", *DIGITS)
    assert out.returncode == 0, out.stderr[-2000:]
    assert journal_mode(tmp_path / "plain.db") == "wal"


@pytest.mark.parametrize("server", ["sqlite", "postgres_url"])
def test_foreign_study_with_trials_is_refused_and_an_empty_one_adopted(server: str, tmp_path: Path, request) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}" if server == "sqlite" else request.getfixturevalue(server)
    storage = optuna.storages.RDBStorage(url)
    used = optuna.create_study(storage=storage, study_name="used")
    used.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    optuna.create_study(storage=storage, study_name="empty")
    out = run_cli("study", TINY, "--storage", url, "--study-name", "used", "--n-trials", "1", *DIGITS)
    one_error_line(out, "study 'used' was not created by hpo", "--study-name")
    assert len(optuna.load_study(study_name="used", storage=storage).trials) == 1
    assert "hpo" not in optuna.load_study(study_name="used", storage=storage).user_attrs

    adopted = run_cli("study", TINY, "--storage", url, "--study-name", "empty", "--n-trials", "1", *DIGITS)
    assert adopted.returncode == 0, adopted.stderr[-2000:]
    study = optuna.load_study(study_name="empty", storage=storage)
    assert study.user_attrs["hpo"]["identity"]["objective.max_epochs"] == 1 and len(study.trials) == 1
    # the settings guard holds from then on
    other = run_cli("study", TINY, "--storage", url, "--study-name", "empty", "--n-trials", "1", *DIGITS[:2], "--set",
                    "objective.max_epochs=2", *DIGITS[4:])  # fmt: skip
    one_error_line(other, "objective.max_epochs: study 'empty' was run with 1, not 2")
    storage.engine.dispose()


def test_a_study_without_settings_waits_for_the_worker_that_is_storing_them(tmp_path: Path) -> None:
    """Another hpo worker created the study an instant ago and stores its settings next: joined, not adopted."""
    from hpo.api import load_config
    from hpo.study import open_study

    url = f"sqlite:///{tmp_path / 's.db'}"
    cfg = load_config(TINY, ["data.dataset=digits"])
    first = optuna.create_study(storage=make_storage(url), study_name="tiny")  # as open_study's create_study leaves it

    def store_later() -> None:
        time.sleep(1.0)
        first.set_user_attr("hpo", {"identity": cfg.identity(), "config": cfg.raw, "marker": "first"})

    import threading

    threading.Thread(target=store_later).start()
    joined = open_study(cfg, make_storage(url))
    assert joined.user_attrs["hpo"]["marker"] == "first"


def test_study_on_an_empty_database_creates_the_tables(postgres_url: str) -> None:
    out = run_cli("study", TINY, "--storage", postgres_url, "--n-trials", "0", *DIGITS)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "studies" in server_tables(postgres_url)


# --------------------------------------------------------------------------------------------
# Work never lands in the wrong storage


def test_storage_flag_and_environment_that_disagree_are_refused(tmp_path: Path) -> None:
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    for command in (("study", TINY, *DIGITS), ("list",)):
        out = run_cli(*command, "--storage", a, env=cli_env(HPO_STORAGE=b), cwd=tmp_path)
        one_error_line(out, f"--storage '{a}' and $HPO_STORAGE '{b}' name different storages")
    assert list(tmp_path.iterdir()) == []
    same = run_cli("study", TINY, "--storage", a, "--n-trials", "0", *DIGITS, env=cli_env(HPO_STORAGE=a), cwd=tmp_path)
    assert same.returncode == 0, same.stderr[-2000:]
    os.environ.pop("HPO_STORAGE", None)
    assert resolve_url(None) == "sqlite:///studies/hpo.db"


def _serving(proc: subprocess.Popen, port: int) -> None:
    import socket

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"nothing listens on {port}")


def test_a_second_proxy_on_a_served_port_is_refused(tmp_path: Path) -> None:
    """gRPC servers share a port (SO_REUSEPORT) unless told not to: the second proxy must not start."""
    port = free_port()
    first = popen_cli("proxy", "--storage", f"sqlite:///{tmp_path / 'a.db'}", "--port", str(port))
    try:
        _serving(first, port)
        out = run_cli("proxy", "--storage", f"sqlite:///{tmp_path / 'b.db'}", "--port", str(port))
        one_error_line(out, f"cannot listen on 127.0.0.1:{port}")
        assert not (tmp_path / "b.db").exists()
    finally:
        first.terminate()
        first.communicate(timeout=30)
    assert first.returncode == 143


def test_proxy_refuses_a_port_any_grpc_server_serves(tmp_path: Path) -> None:
    """Optuna's own proxy server (SO_REUSEPORT on, as gRPC's default) holds the port."""
    port = free_port()
    code = (
        "import optuna, time\n"
        "from optuna.storages._grpc.server import make_server\n"
        f"s = make_server(optuna.storages.InMemoryStorage(), '127.0.0.1', {port}); s.start(); time.sleep(120)\n"
    )
    other = subprocess.Popen([sys.executable, "-c", code], env=cli_env())
    try:
        _serving(other, port)
        out = run_cli("proxy", "--storage", f"sqlite:///{tmp_path / 'p.db'}", "--port", str(port))
        one_error_line(out, f"cannot listen on 127.0.0.1:{port}")
        assert list(tmp_path.iterdir()) == []
    finally:
        other.kill()
        other.wait()


# --------------------------------------------------------------------------------------------
# SQLite paths: any path a user can type


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("sqlite://", "is an in-memory database"),
        ("sqlite:///", "is an in-memory database"),
        ("sqlite:///:memory:", "is an in-memory database"),
        ("sqlite:///file::memory:?mode=memory&uri=true", "is an in-memory database"),
        ("sqlite:///$tmp/hpo.db?timeout=5", "SQLite URLs take no options"),
        ("sqlite:///$tmp/folder", "is a folder, not an SQLite file"),
        ("sqlite:///$tmp/fifo", "is a FIFO, not an SQLite file"),
        ("sqlite:////dev/zero", "is a device, not an SQLite file"),
        ("sqlite:///$tmp/loop", "Too many levels of symbolic links"),
        ("sqlite:///$tmp/" + "n" * 300 + ".db", "File name too long"),
    ],
    ids=["no-path", "empty-path", "memory", "memory-uri", "query", "folder", "fifo", "dev-zero", "symlink-loop", "name-too-long"],
)
@pytest.mark.parametrize("command", ["study", "list"])
def test_sqlite_paths_that_are_no_database_file_are_one_line(url: str, needle: str, command: str, tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ("study", TINY, *DIGITS) if command == "study" else ("list",)
    out = run_cli(*argv, "--storage", url.replace("$tmp", str(tmp_path)), cwd=tmp_path, timeout=120)
    one_error_line(out, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_check_sqlite_file_creates_only_when_asked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'new.db'}"
    with pytest.raises(StorageError, match="no SQLite file"):
        check_sqlite_file(url, create=False)
    assert not (tmp_path / "sub").exists()
    assert check_sqlite_file(url, create=True) == tmp_path / "sub" / "new.db"
    assert (tmp_path / "sub").is_dir() and not (tmp_path / "sub" / "new.db").exists()
    assert check_sqlite_file("postgresql+psycopg2://u@h/db", create=True) is None


def test_study_mismatch_writes_nothing_to_a_server(postgres_url: str) -> None:
    """A refused resume on PostgreSQL: no trial, no attribute, nothing new."""
    made = run_cli("study", TINY, "--storage", postgres_url, "--n-trials", "0", *DIGITS)
    assert made.returncode == 0, made.stderr[-2000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = optuna.storages.RDBStorage(postgres_url)
    before = optuna.load_study(study_name="tiny", storage=storage)
    attrs, trials = before.user_attrs, len(before.trials)
    out = run_cli("study", TINY, "--storage", postgres_url, *DIGITS[:2], "--set", "objective.target=0.5", *DIGITS[4:])
    one_error_line(out, "objective.target")
    after = optuna.load_study(study_name="tiny", storage=storage)
    assert (after.user_attrs, len(after.trials)) == (attrs, trials)
    storage.engine.dispose()
