"""Faults: diverging losses, too-large models, out-of-memory errors, repeated failures, SIGINT and
SIGTERM mid-trial, artifact stores that cannot be written, and seeded runs that must repeat.

Everything runs through the real CLI on real storages; trials are tiny (studies/tiny.toml, or
scikit-learn's digits where Fashion-MNIST is not needed).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.errors import TrialFailed
from tests.conftest import STUDIES, cli_env, held_trial, popen_cli, popen_held, run_cli

TINY = str(STUDIES / "tiny.toml")  # 600 Fashion-MNIST images, target 0.99 (out of reach), 2 epochs
DIGITS = ("--set", "data.dataset=digits", "--no-progress")  # 8x8 images: 64 inputs
# 2**40 units on 64 inputs: a 256 TiB kernel, more than any process can map; allocating it is a
# real out-of-memory error on every machine and costs no memory.
HUGE = 2**40
NOT_REACHED_FROM_ZERO = 2 + 1 + 0.99  # tiny.toml: max_epochs + 1 + (target - 0)


def storage_of(url: str) -> optuna.storages.BaseStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.storages.RDBStorage(url)


def trials_of(storage: optuna.storages.BaseStorage, name: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).trials


def one(trials: list[optuna.trial.FrozenTrial], **params) -> optuna.trial.FrozenTrial:
    (trial,) = [t for t in trials if all(t.params.get(k) == v for k, v in params.items())]
    return trial


# --------------------------------------------------------------------------------------------
# Training faults


@pytest.mark.parametrize(
    ("kind", "activation", "learning_rate"),
    [
        ("nan", "relu", 1e20),  # relu activations overflow: inf - inf in the weights
        ("inf", "tanh", 1e36),  # bounded activations, finite weights, logits apart by more than float32 holds
    ],
)
def test_diverging_loss_ends_its_trial_complete_and_the_study_goes_on(sqlite_url, kind, activation, learning_rate):
    out = run_cli(
        "study", TINY, "--storage", sqlite_url, "--n-trials", "2", *DIGITS, "--no-artifacts",
        "--set", "study.sampler=grid", "--set", "space.dense.units=16", "--set", "space.dense.optimizer=sgd",
        "--set", f"space.dense.activation={activation}", "--set", f"space.dense.learning_rate=[{learning_rate}, 0.05]",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    trials = trials_of(storage_of(sqlite_url))
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    bad, good = one(trials, learning_rate=learning_rate), one(trials, learning_rate=0.05)
    loss = bad.system_attrs["history"]["loss"][0]
    assert math.isnan(loss) if kind == "nan" else (math.isinf(loss) and loss > 0), loss
    assert bad.user_attrs["stop_reason"] == "nan" and bad.user_attrs["epochs"] == 1
    assert bad.value == pytest.approx(NOT_REACHED_FROM_ZERO)  # nothing counted from the diverged epoch
    assert bad.intermediate_values == {0: bad.value}
    assert good.user_attrs["stop_reason"] == "max_epochs" and good.user_attrs["epochs"] == 2


def test_model_over_max_params_is_never_built(sqlite_url):
    """A HUGE model under the default objective.max_params: had it been built, it would fail like the next test."""
    out = run_cli(
        "study", TINY, "--storage", sqlite_url, "--n-trials", "2", *DIGITS, "--no-artifacts",
        "--set", "study.sampler=grid", "--set", "space.dense.learning_rate=0.003", "--set", f"space.dense.units=[16, {HUGE}]",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    trials = trials_of(storage_of(sqlite_url))
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    big, small = one(trials, units_l0=HUGE), one(trials, units_l0=16)
    ua = big.user_attrs
    assert ua["stop_reason"] == "too_large" and ua["reached_target"] is False and ua["epochs_to_target"] is None
    assert ua["n_params"] == 64 * HUGE + HUGE + HUGE * 10 + 10
    assert ua["epochs"] == 0 and big.system_attrs["history"] == {} and big.intermediate_values == {}
    assert big.value == pytest.approx(NOT_REACHED_FROM_ZERO)  # the worst cost: sampled, learned from, not repeated
    assert small.user_attrs["stop_reason"] == "max_epochs" and small.user_attrs["n_params"] == 64 * 16 + 16 + 16 * 10 + 10
    assert small.value < big.value


def test_out_of_memory_fails_only_its_trial(sqlite_url):
    out = run_cli(
        "study", TINY, "--storage", sqlite_url, "--n-trials", "2", *DIGITS, "--no-artifacts",
        "--set", "objective.max_params=0",  # no cap: the HUGE model is built and its allocation fails
        "--set", "study.sampler=grid", "--set", "space.dense.learning_rate=0.003", "--set", f"space.dense.units=[16, {HUGE}]",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "1 complete, 0 pruned, 1 failed" in out.stdout
    trials = trials_of(storage_of(sqlite_url))
    big, small = one(trials, units_l0=HUGE), one(trials, units_l0=16)
    assert big.state == TrialState.FAIL and small.state == TrialState.COMPLETE
    error = big.user_attrs["error"]
    assert error.startswith("ResourceExhaustedError: ") and "OOM when allocating tensor" in error, error
    assert "\n" not in error
    assert big.user_attrs["stop_reason"] == "error" and big.user_attrs["n_params"] > 10**12


def test_consecutive_failures_stop_the_worker_with_exit_3(sqlite_url):
    out = run_cli(
        "study", TINY, "--storage", sqlite_url, "--n-trials", "6", *DIGITS, "--no-artifacts",
        "--set", "objective.max_params=0", "--set", f"space.dense.units={HUGE}", "--set", "study.max_consecutive_failures=2",
    )  # fmt: skip
    assert out.returncode == 3, out.stderr[-2000:]
    assert [t.state for t in trials_of(storage_of(sqlite_url))] == [TrialState.FAIL] * 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "hpo: stopped: 2 trials in a row failed (study.max_consecutive_failures = 2), the last one with trial 1: "
    )
    assert "ResourceExhaustedError" in last and "run the same command to continue" in last
    assert "Traceback" not in out.stderr


def test_only_errors_in_a_row_count_as_consecutive_failures():
    """A trained trial resets the count; a trial refused by study.max_trials neither counts nor resets."""
    from hpo.api import load_config
    from hpo.worker import Signals, _StudyRun

    run = _StudyRun(load_config(TINY, ["study.max_consecutive_failures=3"]), Signals())
    script = iter(["error", "error", "ok", "error", "max_trials", "error", "error", "ok"])

    def objective(trial: optuna.Trial) -> float:
        what = next(script)
        if what == "ok":
            return 1.0
        trial.set_user_attr("stop_reason", what)
        trial.set_user_attr("error", f"ValueError: {trial.number}")
        raise TrialFailed(what)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study()
    study.optimize(objective, n_trials=8, catch=(TrialFailed,), callbacks=[run.after_trial])
    assert len(study.trials) == 7 and run.failures_stopped
    assert run.last_error == "trial 6: ValueError: 6"


# --------------------------------------------------------------------------------------------
# Signals


def test_signals_wait_while_held_and_only_the_first_counts():
    from hpo.worker import Signals

    held = Signals()
    held.hold = True
    held.handle(signal.SIGTERM, None)  # while a trial is being stored: remembered, not raised
    held.handle(signal.SIGINT, None)
    assert (held.received, held.code) == (signal.SIGTERM, 143)
    free = Signals()
    with pytest.raises(KeyboardInterrupt):
        free.handle(signal.SIGINT, None)
    free.handle(signal.SIGTERM, None)  # the clean-up after the first one is not cut short
    assert (free.received, free.code) == (signal.SIGINT, 130)


_SIGNAL_IN_A_FINALIZER = """
import os, signal, sys, time, weakref
from hpo.worker import Terminated, handling_signals

class Target:
    pass

def spin():  # the handler runs here, inside the finalizer, where Python drops what it raises
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(100_000):
        pass

class Dying:
    def __del__(self):
        spin()

with handling_signals() as signals:
    try:
        if sys.argv[1] == "__del__":
            Dying()
        else:
            target = Target()
            ref = weakref.ref(target, lambda r: spin())
            del target
        print("finalizer done", flush=True)
        asleep = time.monotonic()
        time.sleep(60)
        print("not interrupted", flush=True)
    except Terminated:
        print("terminated" if time.monotonic() - asleep < 30 else "terminated after the sleep", flush=True)
"""


@pytest.mark.parametrize("where", ["__del__", "weakref callback"])
def test_a_signal_that_lands_in_a_finalizer_still_interrupts(where):
    """Python drops an exception raised in ``__del__`` or a weakref callback (as SQLAlchemy's
    registries run at import), so a signal handled there would leave the process running."""
    out = subprocess.run(
        [sys.executable, "-c", _SIGNAL_IN_A_FINALIZER, where], capture_output=True, text=True, timeout=90, env=cli_env()
    )
    assert out.stdout.split() == ["finalizer", "done", "terminated"], out.stdout + out.stderr[-2000:]
    assert "Exception ignored" not in out.stderr and "Terminated" not in out.stderr, out.stderr[-2000:]


def _running_with_a_report(storage):
    try:
        trials = trials_of(storage)
    except KeyError:  # the study does not exist yet
        return None
    running = [t for t in trials if t.state == TrialState.RUNNING]
    return running[0] if running and running[0].intermediate_values else None


@pytest.mark.parametrize(
    ("signum", "code", "server"),
    [(signal.SIGINT, 130, "sqlite_url"), (signal.SIGTERM, 143, "postgres_url")],  # each signal, each kind of storage
    ids=["SIGINT-sqlite", "SIGTERM-postgres"],
)
def test_signal_fails_the_running_trial_requeues_it_and_the_same_command_continues(signum, code, server, request, tmp_path):
    url = request.getfixturevalue(server)
    storage = storage_of(url)
    command = ["study", TINY, "--storage", url, "--n-trials", "1", "--no-progress", "--no-artifacts"]
    command += ["--set", "objective.max_epochs=3"]
    proc = popen_held(tmp_path / "gate", *command)  # its trial waits in epoch 2 until released
    try:
        number = held_trial(tmp_path / "gate", proc)
        assert _running_with_a_report(storage).number == number
        sent = time.monotonic()
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    print(f"{signal.Signals(signum).name} on {server.split('_')[0]}: exited {proc.returncode} after {took:.2f} s")
    assert proc.returncode == code, stderr[-2000:]
    assert took < 10, f"exit took {took:.1f} s"
    assert "Traceback" not in stderr
    what = "terminated" if signum == signal.SIGTERM else "interrupted"
    assert stderr.strip().splitlines()[-1] == (
        f"hpo: {what}: the running trial 0 is stored as FAIL and re-queued; run the same command to continue the study"
    )
    failed, queued = trials_of(storage)  # nothing left RUNNING
    assert (failed.state, queued.state) == (TrialState.FAIL, TrialState.WAITING)
    assert failed.number == number == 0 and failed.user_attrs["stop_reason"] == "interrupted"
    assert queued.params == failed.params
    assert (queued.system_attrs["failed_trial"], queued.system_attrs["retry_history"]) == (0, [0])

    again = run_cli(*command)  # the same command continues the study
    assert again.returncode == 0, again.stderr[-2000:]
    trials = trials_of(storage)
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.FAIL), (1, TrialState.COMPLETE)]
    assert trials[1].params == failed.params and trials[1].user_attrs["epochs"] == 3


# --------------------------------------------------------------------------------------------
# Artifact stores that cannot be written


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` refuse new files for real: permission bits, or for root (whom they do not
    stop) the immutable attribute."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        # no skip: a read-only folder that cannot be made here would leave the case untested
        pytest.fail(f"running as root, where permission bits do not stop writes, and chattr +i failed: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def _full_disk() -> None:
    """In the CLI process, before it starts: no file may grow past 64 bytes.  Writes fail part
    way, as on a disk that fills up (EFBIG here, ENOSPC there); 64 bytes leave room for the few
    bytes Python's tempfile writes to find a temporary folder, without which TensorFlow does
    not even import."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))


@pytest.mark.parametrize("fault", ["read-only folder", "full disk"])
def test_an_unwritable_artifact_store_costs_the_artifacts_not_the_trials(fault, tmp_path, request):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    args = ["study", TINY, "--n-trials", "2", "--no-progress", "--artifact-dir", str(artifacts)]
    if fault == "read-only folder":
        url = f"sqlite:///{tmp_path / 'a.db'}"
        with read_only(artifacts):
            out = run_cli(*args, "--storage", url)
        reason = "Permission denied" if os.geteuid() != 0 else "Operation not permitted"
    else:  # the database is a server's, not a file of this process
        url = request.getfixturevalue("postgres_url")
        proc = popen_cli(*args, "--storage", url, preexec_fn=_full_disk)
        stdout, stderr = proc.communicate(timeout=600)
        out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        reason = "File too large"
    assert out.returncode == 0, out.stderr[-2000:]
    trials = trials_of(storage_of(url))
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        assert t.value > 2 and t.user_attrs["stop_reason"] == "max_epochs" and len(t.system_attrs["history"]["loss"]) == 2
        assert not [k for k in t.system_attrs if k.startswith("artifacts:")]
    warned = [line for line in out.stderr.splitlines() if line.startswith("hpo: warning: ")]
    for n in (0, 1):
        for what in ("learning-curve plot", "history"):
            assert any(line.startswith(f"hpo: warning: trial {n}: {what} artifact not written: ") for line in warned), warned
    assert all(reason in line for line in warned), warned
    assert ("cannot be written" in out.stderr) == (fault == "read-only folder")  # said once at the start
    assert list(artifacts.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Reproducibility


@pytest.mark.parametrize("extra", [(), ("--set", "study.deterministic_ops=true")], ids=["default", "deterministic_ops"])
def test_same_study_file_and_seed_give_the_same_trials(tmp_path, extra):
    """Two runs into two fresh files: the same parameters (TPE after the first trial, so its
    suggestions depend on the values), values, reports and epochs to target."""
    args = ["study", TINY, "--n-trials", "3", "--seed", "11", "--no-progress", "--no-artifacts", *extra]
    args += ["--set", "study.sampler=tpe", "--set", "study.sampler_options={n_startup_trials=1}"]
    args += ["--set", "space.dense.dropout=[0.0, 0.3]", "--set", "objective.target=0.7", "--set", "objective.max_epochs=3"]
    runs = []
    for i in range(2):
        url = f"sqlite:///{tmp_path / f'run{i}.db'}"
        out = run_cli(*args, "--storage", url)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(trials_of(storage_of(url)))

    def numbers(t: optuna.trial.FrozenTrial) -> tuple:
        ua = {
            k: v
            for k, v in t.user_attrs.items()
            if k not in ("seconds", "seconds_per_epoch", "compile_seconds", "seconds_to_target", "worker")
        }
        ua["history"] = {k: v for k, v in t.system_attrs["history"].items() if k != "epoch_seconds"}
        return t.state, t.params, t.value, t.intermediate_values, ua

    assert len(runs[0]) == 3
    for a, b in zip(*runs, strict=True):
        assert numbers(a) == numbers(b)
    assert len({tuple(sorted(t.params.items())) for t in runs[0]}) == 3  # three different points, not one thrice


# --------------------------------------------------------------------------------------------
# Signals at any moment, faults of the storage: one line each, never a traceback


@pytest.mark.parametrize(("signum", "code", "what"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_signal_during_start_up_runs_no_trial_and_prints_one_line(signum, code, what, tmp_path):
    """The signal lands while the worker imports TensorFlow, after it created the study: no trial
    is created (none FAIL, none re-queued) and no "Exception ignored" traceback is printed."""
    import sqlite3

    db = tmp_path / "hpo.db"
    proc = popen_cli("study", TINY, "--storage", f"sqlite:///{db}", *DIGITS, "--no-artifacts")

    def study_created() -> bool:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                return bool(c.execute("SELECT COUNT(*) FROM studies").fetchone()[0])
        except sqlite3.Error:
            return False

    deadline = time.monotonic() + 120
    while not study_created() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == f"hpo: {what} before the first trial started; no trial was run"
    assert trials_of(storage_of(f"sqlite:///{db}")) == []


def test_signal_while_optuna_creates_a_trial_leaves_it_waiting_not_failed(tmp_path):
    """A signal held while Optuna creates the trial: the trial never started, so it is WAITING
    again (no FAIL, no retry used up) and the next run trains it."""
    from hpo.worker import Signals, _NotStarted, _StudyRun

    storage = storage_of(f"sqlite:///{tmp_path / 'hpo.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    signals = Signals()
    signals.hold, signals.received = True, signal.SIGINT
    run = _StudyRun(None, signals)
    with pytest.raises(_NotStarted):
        study.optimize(run.wrap(lambda t: t.suggest_float("x", 0, 1)), n_trials=1)
    assert [(t.number, t.state) for t in study.trials] == [(0, TrialState.WAITING)]
    assert run.waiting_trial == 0 and run.interrupted_trial is None
    study.optimize(_StudyRun(None, Signals()).wrap(lambda t: t.suggest_float("x", 0, 1)), n_trials=1)
    assert [(t.number, t.state) for t in study.trials] == [(0, TrialState.COMPLETE)]


def _read_pty(master: int, proc: subprocess.Popen, seconds: float) -> str:
    import select

    chunks, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed, the process has exited
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks).decode(errors="replace")


def test_ctrl_c_in_a_terminal_prints_no_traceback(tmp_path):
    """In a terminal the progress bar's log handler carries Optuna's lines: Ctrl-C mid-trial is
    Optuna's one-line warning and hpo's line, not Optuna's 40-line KeyboardInterrupt traceback."""
    import fcntl
    import pty
    import struct
    import sys
    import termios

    from tests.conftest import REPO, cli_env

    gate = tmp_path / "gate"
    gate.mkdir()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    command = ["study", TINY, "--storage", f"sqlite:///{tmp_path / 'hpo.db'}", "--n-trials", "1", "--no-artifacts"]
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "held_worker.py"), str(gate), *command, "--set", "objective.max_epochs=3"],
        cwd=REPO,
        env=cli_env(),
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    try:
        text = ""
        deadline = time.monotonic() + 300
        while not list(gate.glob("running-*")) and proc.poll() is None and time.monotonic() < deadline:
            text += _read_pty(master, proc, 0.5)
        assert list(gate.glob("running-*")), text[-2000:]
        proc.send_signal(signal.SIGINT)
        text += _read_pty(master, proc, 60)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        os.close(master)
    assert proc.returncode == 130, text[-3000:]
    assert "0/1" in text  # the progress bar was on: this ran the terminal's code path
    assert "Traceback" not in text, text[-3000:]
    assert "hpo: interrupted: the running trial 0 is stored as FAIL and re-queued" in text


def test_full_disk_under_the_sqlite_file_mid_study_is_one_line(tmp_path):
    """No file may grow any more once the trial trains: SQLite's writes fail ("database or disk is
    full"); the worker says so in one line, without Optuna's traceback."""
    gate = tmp_path / "gate"
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = popen_held(gate, "study", TINY, "--storage", url, "--n-trials", "1", "--no-progress", "--no-artifacts",
                      "--set", "objective.max_epochs=3")  # fmt: skip
    try:
        held_trial(gate, proc)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1, 1))
        (gate / "release").touch()
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith(f"hpo: storage {url} failed mid-study: ")
    assert "full" in stderr.strip().splitlines()[-1] or "disk" in stderr.strip().splitlines()[-1], stderr[-2000:]


def test_the_bar_in_a_terminal_says_the_best_result_in_epochs(tmp_path):
    """In a terminal: the finished trials' lines above the bar, the bar's words the objective's
    ("best: not reached (val_accuracy 0.8...)"), not Optuna's raw cost."""
    import fcntl
    import pty
    import struct
    import sys
    import termios

    from tests.conftest import REPO, cli_env

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    command = ["study", TINY, "--storage", f"sqlite:///{tmp_path / 'hpo.db'}", "--n-trials", "2", "--no-artifacts"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpo.run", *command], cwd=REPO, env=cli_env(), stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    try:
        text = _read_pty(master, proc, 300)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        os.close(master)
    assert proc.returncode == 0, text[-3000:]
    assert "2/2" in text and "best: not reached (val_accuracy 0." in text, text[-3000:]
    assert "trial 0: not reached in 2 epochs" in text and "trial 1: not reached in 2 epochs" in text
    assert "Best value" not in text and "finished with value" not in text
