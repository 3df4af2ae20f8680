"""Shared studies: many worker processes on real PostgreSQL and MariaDB servers, crash
recovery with real signals, the gRPC proxy, bad URLs.  Trials are tiny (studies/tiny.toml)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.api import load_config
from hpo.objective import TRIAL_ATTRS
from hpo.storage import make_storage
from hpo.study import open_study
from tests.conftest import MYSQL_ADMIN_URL, REPO, STUDIES, cli_env, held_trial, popen_cli, popen_held, run_cli, wait_for

TINY = str(STUDIES / "tiny.toml")
SECRET = "pw-" + uuid.uuid4().hex[:8]  # a password that must never be printed


def with_password(url: str, password: str = SECRET) -> str:
    """postgresql+psycopg2://postgres@host/db -> postgresql+psycopg2://postgres:PASSWORD@host/db"""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


def load(url: str, name: str = "tiny") -> optuna.Study:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = optuna.storages.RDBStorage(url.replace(f":{SECRET}@", "@"))
    return optuna.load_study(study_name=name, storage=storage)


def study_names(url: str) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = optuna.storages.RDBStorage(url)
    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


def assert_finished_trials(study: optuna.Study, n: int) -> None:
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(n))
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    for t in trials:
        missing = [k for k in (*TRIAL_ATTRS, "best_val_accuracy") if k not in t.user_attrs]
        assert not missing, f"trial {t.number} lacks {missing}"
        assert t.user_attrs["stop_reason"] == "max_epochs"
        assert len(t.system_attrs["history"]["val_accuracy"]) == t.user_attrs["epochs"] == 1


ONE_EPOCH = ("--set", "objective.max_epochs=1", "--no-artifacts")


# --------------------------------------------------------------------------------------------
# Many workers on one study


def test_four_workers_share_a_postgresql_study(postgres_url, tmp_path):
    url = with_password(postgres_url)
    artifacts = tmp_path / "artifacts"
    args = ("--set", "objective.max_epochs=1", "--artifact-dir", str(artifacts))
    out = run_cli("study", TINY, "--storage", url, "--workers", "4", "--n-trials", "20", *args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert SECRET not in out.stdout + out.stderr
    assert "4 worker processes" in out.stdout
    assert all(f"[worker {i}]" in out.stdout for i in range(4))
    assert "\n20 trials asked, 20 run in " in out.stdout and "in 4 processes" in out.stdout  # one account for all workers
    study = load(url)
    assert_finished_trials(study, 20)
    assert len({t.user_attrs["worker"] for t in study.trials}) == 4  # four processes ran them
    # each trial's artifacts (curves, history JSON and CSV, a model when best), from four processes into one store
    counts = [sum(k.startswith("artifacts:") for k in t.system_attrs) for t in study.trials]
    assert min(counts) >= 3
    assert len(list(artifacts.iterdir())) == sum(counts)


def test_four_simultaneous_first_starts_on_mariadb_make_one_study(mysql_url):
    """Four independent commands started at one instant on a new name: one study, 4 x 5 trials."""
    env = cli_env(HPO_STORAGE=mysql_url)
    procs = [
        popen_cli("study", TINY, "--study-name", "tiny", "--n-trials", "5", "--seed", str(i), *ONE_EPOCH, env=env)
        for i in range(4)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_stdout, stderr) in zip(procs, outs, strict=True):
        assert p.returncode == 0, stderr[-2000:]
    assert study_names(mysql_url) == ["tiny"]
    assert_finished_trials(load(mysql_url), 20)


RACE = """
import sys, time
import hpo.storage
from hpo.api import load_config
from hpo.storage import make_storage
from hpo.study import open_study
url, at, attempts = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
hpo.storage.INIT_ATTEMPTS = attempts
cfg = load_config(sys.argv[4])
while time.time() < at:
    time.sleep(0.001)
print(open_study(cfg, make_storage(url)).study_name)
"""


def start_at_one_instant(url: str, n: int, attempts: int) -> list[subprocess.CompletedProcess]:
    """n processes open a new study on an empty database at the same instant (no training)."""
    at = time.time() + 8  # every process has imported Optuna and SQLAlchemy by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, url, str(at), str(attempts), TINY],
            cwd=REPO,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=120), *p.communicate()) for p in procs]


@pytest.mark.parametrize("server", ["postgres_url", "mysql_url"])
def test_four_workers_starting_at_one_instant_make_one_study(server, request):
    url = request.getfixturevalue(server)
    outs = start_at_one_instant(url, 4, attempts=6)
    assert [o.returncode for o in outs] == [0] * 4, [o.stderr[-800:] for o in outs]
    assert [o.stdout.strip() for o in outs] == ["tiny"] * 4
    assert study_names(url) == ["tiny"]
    assert load(url).user_attrs["hpo"]["identity"]["objective.max_epochs"] == 2


def test_max_trials_caps_the_study_across_workers(sqlite_url):
    """Two workers on one SQLite file, 10 trials asked for, study.max_trials = 3."""
    out = run_cli(
        "study", TINY, "--storage", sqlite_url, "--workers", "2", "--n-trials", "10", "--set", "study.max_trials=3", *ONE_EPOCH
    )
    assert out.returncode == 0, out.stderr[-2000:]
    trials = load(sqlite_url).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    surplus = [t for t in trials if t not in finished]
    assert all(t.state == TrialState.FAIL and t.user_attrs.get("stop_reason") == "max_trials" for t in surplus)


def test_a_failed_worker_fails_the_command(sqlite_url):
    proc = popen_cli("study", TINY, "--storage", sqlite_url, "--workers", "2", "--n-trials", "2", *ONE_EPOCH)
    children = wait_for(lambda: _children(proc.pid) if len(_children(proc.pid)) == 2 else None, 120, "two workers")
    os.kill(children[1], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 1
    assert "worker 1 exited with code -9" in stderr


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------------------------
# Crash recovery


def _running_with_a_report(url: str):
    try:
        study = load(url)
    except KeyError:
        return None
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return running[0] if running and running[0].intermediate_values else None


def test_sigkilled_worker_trial_fails_after_grace_period_and_is_retried(postgres_url, tmp_path):
    hb = ("--set", "study.heartbeat_interval=1", "--set", "study.grace_period=3", "--set", "study.max_retries=1")
    epochs = ("--set", "objective.max_epochs=2")
    env = cli_env(HPO_STORAGE=postgres_url)
    victim = popen_held(tmp_path / "gate", "study", TINY, "--n-trials", "1", "--no-artifacts", *hb, *epochs, env=env)
    held_trial(tmp_path / "gate", victim)  # RUNNING, its first epoch reported, waiting
    trial = _running_with_a_report(postgres_url)
    victim.kill()  # SIGKILL: no clean-up of any kind
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    assert load(postgres_url).trials[trial.number].state == TrialState.RUNNING  # nobody has noticed yet
    time.sleep(4)  # > grace period

    out = run_cli("study", TINY, "--n-trials", "1", "--no-artifacts", *hb, *epochs, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    trials = load(postgres_url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    retry = trials[1]
    assert retry.system_attrs["failed_trial"] == trial.number
    assert retry.params == trial.params
    assert retry.user_attrs["epochs"] == 2 and retry.user_attrs["stop_reason"] == "max_epochs"


DIE_AFTER_ASK = """
import os, signal, sys, warnings
from hpo.api import load_config
from hpo.storage import make_storage
from hpo.study import open_study
url, path, waiting = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
cfg = load_config(path, ["study.heartbeat_interval=1", "study.grace_period=3", "objective.max_epochs=1"])
study = open_study(cfg, make_storage(url, heartbeat_interval=1, grace_period=3, max_retry=1))
if waiting:
    study.enqueue_trial({"units_l0": 16, "learning_rate": 0.005})
warnings.simplefilter("ignore")
trial = study.ask()  # what study.optimize does before it starts the heartbeat thread
print(trial.number, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("waiting", [False, True], ids=["new-trial", "waiting-trial"])
def test_worker_killed_before_its_first_heartbeat_is_failed_and_retried(postgres_url, waiting):
    """A worker dies the instant after its trial became RUNNING, before the heartbeat thread ran.

    Optuna's stale check skips RUNNING trials without any heartbeat: such a trial used to stay
    RUNNING forever.  hpo's storage gives a trial its heartbeat as it becomes RUNNING.
    """
    victim = subprocess.run(
        [sys.executable, "-c", DIE_AFTER_ASK, postgres_url, TINY, "1" if waiting else "0"],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert victim.returncode == -signal.SIGKILL, victim.stderr[-2000:]
    assert victim.stdout.strip() == "0"
    assert [t.state for t in load(postgres_url).trials] == [TrialState.RUNNING]
    time.sleep(4)  # > grace period

    hb = ("--set", "study.heartbeat_interval=1", "--set", "study.grace_period=3", "--set", "study.max_retries=1")
    out = run_cli("study", TINY, "--n-trials", "1", "--no-artifacts", *hb, *ONE_EPOCH[:2], env=cli_env(HPO_STORAGE=postgres_url))
    assert out.returncode == 0, out.stderr[-2000:]
    trials = load(postgres_url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].system_attrs["failed_trial"] == 0
    if waiting:
        assert trials[1].params == {"units_l0": 16, "learning_rate": 0.005}


def test_worker_whose_trial_was_failed_while_it_was_paused_goes_on(postgres_url, tmp_path):
    """A live worker misses its heartbeats (paused, or starved on an overloaded machine) and
    another worker's stale check fails and re-queues its trial: the worker says so in one line
    and goes on with its next trial, instead of dying on Optuna's "Cannot tell a FAIL trial"."""
    hb = ("--set", "study.heartbeat_interval=1", "--set", "study.grace_period=3", "--set", "study.max_retries=1")
    # The trial waits at the gate (tests/held_worker.py) in its second epoch until released.
    args = ("--n-trials", "2", "--no-artifacts", "--no-progress", *hb, "--set", "objective.max_epochs=2")
    # One storage for watching and for the stale check (not one connection pool per look).
    cfg = load_config(TINY, ["objective.max_epochs=2"])
    storage = make_storage(postgres_url, heartbeat_interval=1, grace_period=3, max_retry=1)
    study = open_study(cfg, storage)

    def running_with_a_report():
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return running[0] if running and running[0].intermediate_values else None

    gate = tmp_path / "gate"
    worker = popen_held(gate, "study", TINY, *args, env=cli_env(HPO_STORAGE=postgres_url))
    try:
        held_trial(gate, worker)
        trial = running_with_a_report()
        os.kill(worker.pid, signal.SIGSTOP)
        time.sleep(5)  # > grace period: the trial looks dead
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)  # what any other worker does before its next trial
        assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    finally:
        os.kill(worker.pid, signal.SIGCONT)
        (gate / "release").touch()  # the trial goes on training, and finds itself failed
    stdout, stderr = worker.communicate(timeout=600)
    assert worker.returncode == 0, stderr[-3000:]
    assert f"trial {trial.number} was marked FAIL by another worker" in stderr
    assert "Cannot tell" not in stderr
    trials = study.trials
    storage.engine.dispose()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]  # the worker ran the retry itself
    assert trials[1].system_attrs["failed_trial"] == trial.number
    assert "trials asked, 2 run in " in stdout  # the lost trial and its retry


# --------------------------------------------------------------------------------------------
# gRPC storage proxy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_through_the_grpc_proxy(postgres_url):
    port = _free_port()
    url = with_password(postgres_url)
    proxy = popen_cli("proxy", "--storage", url, "--port", str(port))
    try:
        line = proxy.stdout.readline()
        assert f"grpc://127.0.0.1:{port}" in line and SECRET not in line
        out = run_cli("study", TINY, "--storage", f"grpc://127.0.0.1:{port}", "--workers", "2", "--n-trials", "4", *ONE_EPOCH)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "2 worker processes" in out.stdout
    finally:
        proxy.send_signal(signal.SIGTERM)
        stdout, stderr = proxy.communicate(timeout=30)
    assert proxy.returncode == 143
    assert SECRET not in line + stdout + stderr
    assert_finished_trials(load(postgres_url), 4)
    # The proxy's storage has no heartbeat: a heartbeat given to the trials it creates would never
    # be renewed (its workers cannot beat), and direct workers on the study would fail them.
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as c:
        assert c.execute(sqlalchemy.text("SELECT count(*) FROM trial_heartbeats")).scalar() == 0
    engine.dispose()


# --------------------------------------------------------------------------------------------
# Bad storage URLs: one line naming the host, exit 2, no password anywhere


def _assert_one_line_error(out: subprocess.CompletedProcess, host: str) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert SECRET not in out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("hpo: error: ") and host in lines[0]


def test_unreachable_port_is_one_line_without_password(tmp_path):
    url = f"postgresql+psycopg2://postgres:{SECRET}@127.0.0.1:{_free_port()}/test"
    started = time.monotonic()
    out = run_cli("study", TINY, "--storage", url, cwd=tmp_path)
    assert time.monotonic() - started < 30
    _assert_one_line_error(out, "127.0.0.1:")
    assert "***" in out.stderr


def test_wrong_password_is_one_line_without_password(mysql_url):
    import sqlalchemy

    user = "hpo_pw_" + uuid.uuid4().hex[:6]
    admin = sqlalchemy.create_engine(MYSQL_ADMIN_URL)
    with admin.connect() as c:
        for host in ("localhost", "127.0.0.1", "%"):
            c.execute(sqlalchemy.text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY 'the-right-one'"))
    try:
        db = mysql_url.rsplit("/", 1)[1]
        url = f"mysql+pymysql://{user}:{SECRET}@127.0.0.1:3306/{db}"
        out = run_cli("study", TINY, "--no-artifacts", env=cli_env(HPO_STORAGE=url))  # the password only in the environment
        _assert_one_line_error(out, "127.0.0.1:3306")
        assert "Access denied" in out.stderr
    finally:
        with admin.connect() as c:
            for host in ("localhost", "127.0.0.1", "%"):
                c.execute(sqlalchemy.text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
        admin.dispose()


def test_unreachable_proxy_is_one_line(tmp_path):
    port = _free_port()
    out = run_cli("study", TINY, "--storage", f"grpc://127.0.0.1:{port}", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"hpo: error: cannot reach the storage proxy at 127.0.0.1:{port} within 10 s: "
        f"start it with python -m hpo.run proxy --storage URL --port {port}"
    ]


# --------------------------------------------------------------------------------------------
# scripts/


def test_local_launcher_runs_n_workers_on_one_study(sqlite_url, tmp_path):
    env = cli_env(HPO_STORAGE=sqlite_url, PYTHON=sys.executable, LOG_DIR=str(tmp_path / "logs"), SEED="7")
    launcher = str(REPO / "scripts" / "launch_workers.sh")
    out = subprocess.run(
        [launcher, "2", TINY, "--n-trials", "1", *ONE_EPOCH], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr
    assert "started 2 workers" in out.stdout
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs == ["worker-0.log", "worker-1.log"]
    study = load(sqlite_url)
    assert_finished_trials(study, 2)
    assert study.trials[0].params != study.trials[1].params  # seeds 7 and 8, not the same twice


def test_local_launcher_rejects_bad_input(tmp_path):
    launcher = str(REPO / "scripts" / "launch_workers.sh")
    out = subprocess.run(
        [launcher, "two", TINY], cwd=tmp_path, env=cli_env(HPO_STORAGE="sqlite:///x.db"), capture_output=True, text=True
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "'two'" in out.stderr
    out = subprocess.run([launcher, "2", TINY], cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert out.returncode == 2 and "HPO_STORAGE" in out.stderr
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def test_storage_benchmark_runs():
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench_storage.py"),
            "--trials",
            "8",
            "--backends",
            "sqlite",
            "--skip-throughput",
        ],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    row = out.stdout.strip().splitlines()[-1].split()
    assert row[0] == "sqlite" and float(row[1]) > 0


def test_password_hidden_in_log_lines():
    """Optuna's and SQLAlchemy's log lines pass through hpo's filter before reaching stderr."""
    url = f"postgresql+psycopg2://hpo:{SECRET}@db.example.org/hpo"
    code = (
        "import logging, sys, optuna\n"
        "from hpo.storage import hide_password_in_logs\n"
        "logging.basicConfig()\n"
        "hide_password_in_logs(sys.argv[1])\n"
        "optuna.logging.get_logger('optuna.storages').warning('cannot reach %s', sys.argv[1])\n"
        "logging.getLogger('sqlalchemy.engine').warning('engine ' + sys.argv[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code, url], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert SECRET not in out.stdout + out.stderr
    assert out.stderr.count("hpo:***@db.example.org/hpo") == 2


def test_database_lost_mid_study_is_one_line_exit_1(postgres_url, tmp_path):
    """The database disappears while a trial trains: one line, no traceback, no password."""
    import sqlalchemy

    from tests.conftest import PG_ADMIN_URL

    url = with_password(postgres_url)
    gate = tmp_path / "gate"
    proc = popen_held(
        gate,
        "study",
        TINY,
        "--storage",
        url,
        "--n-trials",
        "2",
        "--no-progress",
        "--no-artifacts",
        "--set",
        "objective.max_epochs=3",
    )
    held_trial(gate, proc)
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f'DROP DATABASE "{postgres_url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()
    (gate / "release").touch()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr[-2000:]
    assert SECRET not in stdout + stderr
    assert "Traceback" not in stderr
    assert "failed mid-study" in stderr and "does not exist" in stderr
