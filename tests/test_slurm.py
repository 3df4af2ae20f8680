"""``hpo.slurm`` (what a worker reads from a Slurm job's environment), and
``scripts/slurm_array.sbatch`` run on a real Slurm cluster (``scripts/slurm_local.sh start``
makes a one-node one here): array tasks sharing one PostgreSQL study, a task cancelled with
``scancel``, one requeued with ``scontrol requeue`` and one whose worker gets SIGKILL alone,
while they run a trial.

The tests skip with a reason when Slurm does not answer, and fail under
``HPO_REQUIRE_SERVICES=1`` (``.ci/run``, which starts the cluster).  Trials are tiny
(``studies/tiny.toml``); each task gets one CPU.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hpo import slurm as hpo_slurm
from hpo.launch import cpu_count
from hpo.objective import TRIAL_ATTRS
from tests.conftest import REPO, STUDIES, _service_missing, cli_env, wait_for
from tests.test_cluster import load

SBATCH = REPO / "scripts" / "slurm_array.sbatch"
TINY = str(STUDIES / "tiny.toml")
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
TRIAL_LINE = re.compile(r"^trial (\d+): ", re.M)

# A Python for $HPO_PYTHON whose trials wait at the start of their second epoch until the test
# creates GATE/release (tests/held_worker.py): the template's `-m hpo.run ARGS` becomes
# `tests/held_worker.py GATE ARGS`, the real worker with one more Keras callback.
HELD_PYTHON = """#!/bin/sh
[ "$1" = -m ] && [ "$2" = hpo.run ] || exit 2
shift 2
exec {python} {held} {gate} "$@"
"""


@pytest.fixture(scope="module")
def slurm() -> None:
    """The cluster answers and has a node to run on."""
    if shutil.which("sbatch") is None:
        _service_missing(
            "Slurm", FileNotFoundError("no sbatch on PATH; scripts/slurm_local.sh start installs a one-node cluster")
        )
    out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not {"idle", "mix", "alloc"} & set(out.stdout.split()):
        problem = (out.stderr.strip() or f"node states {out.stdout.split()}").splitlines()[0]
        _service_missing("Slurm", RuntimeError(f"{problem}; scripts/slurm_local.sh start starts a one-node cluster"))


class Jobs:
    """Array jobs of the template submitted by one test; cancelled at its end if still there."""

    def __init__(self, folder: Path, storage: str):
        self.folder, self.storage, self.ids = folder, storage, []
        (folder / "hpo-logs").mkdir()  # the template's --output folder must exist before sbatch

    def submit(self, array: str, *args: str, python: str = sys.executable) -> str:
        env = cli_env(HPO_STORAGE=self.storage, HPO_PYTHON=python)
        out = subprocess.run(
            ["sbatch", "--parsable", f"--array={array}", "--cpus-per-task=1", "--mem=1G", str(SBATCH), TINY, *args],
            cwd=self.folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        job = out.stdout.strip().split(";")[0]
        self.ids.append(job)
        return job

    def tasks(self, job: str) -> dict[str, dict[str, str]]:
        """Array task id -> its fields in ``scontrol show job`` (JobState, ExitCode, Restarts, ...)."""
        out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        records = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in out.stdout.splitlines()]
        return {r["ArrayTaskId"]: r for r in records}

    def wait(self, job: str, n_tasks: int, timeout: float = 400) -> dict[str, dict[str, str]]:
        """The tasks once all ``n_tasks`` have ended."""

        def ended():
            tasks = self.tasks(job)
            return tasks if len(tasks) == n_tasks and all(t["JobState"] in ENDED for t in tasks.values()) else None

        return wait_for(ended, timeout, f"the tasks of job {job} to end")

    def log(self, job: str, task: int | str) -> str:
        path = self.folder / "hpo-logs" / f"{job}_{task}.log"
        return path.read_text() if path.exists() else f"(no {path.name})"

    def cancel_all(self) -> None:
        if self.ids:
            subprocess.run(["scancel", *self.ids], capture_output=True, timeout=60)
            for job in self.ids:
                wait_for(lambda j=job: all(t["JobState"] in ENDED for t in self.tasks(j).values()), 120, f"job {job} to end")


@pytest.fixture
def jobs(slurm, postgres_url, tmp_path):
    jobs = Jobs(tmp_path, postgres_url)
    yield jobs
    jobs.cancel_all()  # before postgres_url drops the database


def held_python(folder: Path) -> tuple[str, Path]:
    """($HPO_PYTHON whose trials wait at the gate, the gate folder)."""
    gate = folder / "gate"
    gate.mkdir()
    path = folder / "held-python"
    paths = {"python": sys.executable, "held": REPO / "tests" / "held_worker.py", "gate": gate}
    path.write_text(HELD_PYTHON.format(**{k: shlex.quote(str(v)) for k, v in paths.items()}))
    path.chmod(0o755)
    return str(path), gate


def held_trials(jobs: Jobs, job: str, gate: Path, n: int) -> list[int]:
    """The numbers of the first ``n`` trials waiting at the gate (fails if a task ends first)."""

    def arrived():
        for task, fields in jobs.tasks(job).items():
            if fields["JobState"] in ENDED:
                pytest.fail(
                    f"task {job}_{task} ended ({fields['JobState']}) before {n} trials were at the gate: {jobs.log(job, task)[-2000:]}"
                )
        numbers = sorted(int(p.name.split("-")[1]) for p in gate.glob("running-*"))
        return numbers[:n] if len(numbers) >= n else None

    return wait_for(arrived, 300, f"{n} trials at the gate")


def assert_accounted_for(study, interrupted: list[int], stop_reason: str | None = "interrupted") -> dict[int, object]:
    """Numbers 0..n-1, nothing RUNNING or WAITING, FAIL exactly the ``interrupted`` trials, each
    re-run once with its parameters (returned: interrupted number -> its retry), and every
    finished trial with all its user attributes.  ``stop_reason``: the interrupted trials' (None:
    killed, they recorded none)."""
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert sorted(t.number for t in trials if t.state == TrialState.FAIL) == sorted(interrupted)
    finished = [t for t in trials if t.state != TrialState.FAIL]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in finished), [t.state for t in trials]
    for t in finished:
        missing = [k for k in (*TRIAL_ATTRS, "best_val_accuracy", "worker", "slurm_job") if k not in t.user_attrs]
        assert not missing, f"trial {t.number} lacks {missing}"
    retries = {t.system_attrs["failed_trial"]: t for t in finished if "failed_trial" in t.system_attrs}
    assert sorted(retries) == sorted(interrupted)
    for number, retry in retries.items():
        assert retry.params == trials[number].params
        assert trials[number].user_attrs.get("stop_reason") == stop_reason
    return retries


def trials_in_log(log: str) -> list[int]:
    return [int(n) for n in TRIAL_LINE.findall(log)]


# --------------------------------------------------------------------------------------------
# hpo.slurm, from the environment alone

SLURM_VARS = (
    "SLURM_CPUS_PER_TASK",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_ID",
    "SLURMD_NODENAME",
    "SLURM_RESTART_COUNT",
)


@pytest.fixture
def outside_slurm(monkeypatch):
    for name in SLURM_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_outside_slurm_nothing_is_read(outside_slurm):
    assert (hpo_slurm.allocated_cpus(), hpo_slurm.job_name(), hpo_slurm.describe()) == (None, None, None)


def test_an_array_task_is_named_as_squeue_shows_it(outside_slurm):
    outside_slurm.setenv("SLURM_JOB_ID", "107")
    assert hpo_slurm.describe() == "Slurm job 107"
    for name, value in (("SLURM_ARRAY_JOB_ID", "105"), ("SLURM_ARRAY_TASK_ID", "2"), ("SLURMD_NODENAME", "gpu07")):
        outside_slurm.setenv(name, value)
    assert hpo_slurm.job_name() == "105_2"
    assert hpo_slurm.describe() == "Slurm job 105_2 on node gpu07"
    outside_slurm.setenv("SLURM_RESTART_COUNT", "0")
    assert hpo_slurm.describe() == "Slurm job 105_2 on node gpu07"
    outside_slurm.setenv("SLURM_RESTART_COUNT", "2")
    assert hpo_slurm.describe() == "Slurm job 105_2 on node gpu07, requeued 2 times"


def test_workers_use_the_cpus_slurm_allocated_not_the_node_s(outside_slurm):
    outside_slurm.setenv("SLURM_CPUS_PER_TASK", "3")
    assert hpo_slurm.allocated_cpus() == 3
    assert cpu_count() == 3  # --workers N splits these
    for bad in ("", "0", "x"):
        outside_slurm.setenv("SLURM_CPUS_PER_TASK", bad)
        assert hpo_slurm.allocated_cpus() is None


# --------------------------------------------------------------------------------------------
# The template on the cluster


def test_three_array_tasks_share_one_postgresql_study(jobs):
    job = jobs.submit("0-2", "--n-trials", "2", "--set", "objective.max_epochs=1", "--no-artifacts")
    tasks = jobs.wait(job, 3)
    assert {i: (t["JobState"], t["ExitCode"]) for i, t in tasks.items()} == {str(i): ("COMPLETED", "0:0") for i in range(3)}

    study = load(jobs.storage)
    assert assert_accounted_for(study, []) == {}
    assert len(study.trials) == 6
    by_task = {i: sorted(t.number for t in study.trials if t.user_attrs["slurm_job"] == f"{job}_{i}") for i in range(3)}
    assert all(len(numbers) == 2 for numbers in by_task.values()), by_task
    assert len({t.user_attrs["worker"] for t in study.trials}) == 3  # three processes
    for i in range(3):
        log = jobs.log(job, i)
        assert f"Slurm job {job}_{i} on node " in log
        assert "x 1 CPU thread\n" in log  # SLURM_CPUS_PER_TASK, not the node's CPUs
        assert sorted(trials_in_log(log)) == by_task[i]  # the log says which trials the task ran


def test_a_cancelled_task_s_trial_is_failed_and_rerun_by_another_task(jobs, tmp_path):
    python, gate = held_python(tmp_path)
    job = jobs.submit("0-1", "--n-trials", "2", "--set", "objective.max_epochs=2", "--no-artifacts", python=python)
    held = held_trials(jobs, job, gate, 2)  # each task's first trial is RUNNING, its first epoch reported
    study = load(jobs.storage)
    task_of = {t.number: t.user_attrs["slurm_job"] for t in study.get_trials(states=(TrialState.RUNNING,))}
    assert sorted(task_of) == held and sorted(task_of.values()) == [f"{job}_0", f"{job}_1"]
    victim = next(n for n, task in task_of.items() if task == f"{job}_1")

    subprocess.run(["scancel", f"{job}_1"], check=True, timeout=60)  # SIGTERM, SIGKILL after KillWait
    wait_for(lambda: jobs.tasks(job)["1"]["JobState"] == "CANCELLED", 120, "task 1 cancelled")
    trials = load(jobs.storage).trials
    assert trials[victim].state == TrialState.FAIL  # stored by the worker itself, no grace period needed
    assert any(t.state == TrialState.WAITING and t.system_attrs.get("failed_trial") == victim for t in trials)
    assert f"the running trial {victim} is stored as FAIL and re-queued; other workers of the study" in jobs.log(job, 1)

    (gate / "release").touch()
    tasks = jobs.wait(job, 2)
    assert (tasks["0"]["JobState"], tasks["0"]["ExitCode"]) == ("COMPLETED", "0:0")
    retries = assert_accounted_for(load(jobs.storage), [victim])
    assert retries[victim].user_attrs["slurm_job"] == f"{job}_0"  # the surviving task re-ran it
    assert retries[victim].number in trials_in_log(jobs.log(job, 0))
    assert len(load(jobs.storage).trials) == 3  # task 0's two trials and the interrupted one


def test_a_task_killed_without_sigterm_leaves_its_trial_to_the_grace_period(jobs, tmp_path):
    """SIGKILL only (the OOM killer, a lost node): the trial stays RUNNING until its heartbeat is
    older than study.grace_period; the surviving task's next trial fails it and re-runs it.
    (``scancel --signal=KILL`` is no such test: Slurm cancels the job, SIGTERM first.)"""
    python, gate = held_python(tmp_path)
    heartbeat = ("--set", "study.heartbeat_interval=1", "--set", "study.grace_period=3")
    job = jobs.submit("0-1", "--n-trials", "2", "--set", "objective.max_epochs=2", *heartbeat, "--no-artifacts", python=python)
    held_trials(jobs, job, gate, 2)
    running = load(jobs.storage).get_trials(states=(TrialState.RUNNING,))
    victim = next(t for t in running if t.user_attrs["slurm_job"] == f"{job}_1")

    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)  # the task's worker process
    task = wait_for(lambda: jobs.tasks(job)["1"] if jobs.tasks(job)["1"]["JobState"] in ENDED else None, 120, "task 1 ended")
    assert (task["JobState"], task["ExitCode"]) == ("FAILED", "0:9")
    assert load(jobs.storage).trials[victim.number].state == TrialState.RUNNING  # nobody has noticed yet
    time.sleep(4)  # > grace period
    (gate / "release").touch()
    tasks = jobs.wait(job, 2)
    assert (tasks["0"]["JobState"], tasks["0"]["ExitCode"]) == ("COMPLETED", "0:0")
    study = load(jobs.storage)
    retries = assert_accounted_for(study, [victim.number], stop_reason=None)
    assert retries[victim.number].user_attrs["slurm_job"] == f"{job}_0"  # the surviving task re-ran it
    assert len(study.trials) == 3


def test_a_requeued_task_reruns_its_interrupted_trial(jobs, tmp_path):
    python, gate = held_python(tmp_path)
    job = jobs.submit("0", "--n-trials", "2", "--set", "objective.max_epochs=2", "--no-artifacts", python=python)
    [victim] = held_trials(jobs, job, gate, 1)
    first_worker = load(jobs.storage).trials[victim].user_attrs["worker"]

    subprocess.run(["scontrol", "requeue", f"{job}_0"], check=True, timeout=60)
    wait_for(lambda: load(jobs.storage).trials[victim].state == TrialState.FAIL, 120, f"trial {victim} FAIL")
    (gate / "release").touch()  # the requeued run's trials go through
    tasks = jobs.wait(job, 1)
    assert (tasks["0"]["JobState"], tasks["0"]["ExitCode"], tasks["0"]["Restarts"]) == ("COMPLETED", "0:0", "1")

    study = load(jobs.storage)
    retries = assert_accounted_for(study, [victim])
    assert len(study.trials) == 3  # the interrupted trial, then the requeued run's two
    rerun = [t for t in study.trials if t.number != victim]
    assert {t.user_attrs["slurm_job"] for t in rerun} == {f"{job}_0"}
    assert first_worker not in {t.user_attrs["worker"] for t in rerun}  # a new process: the requeued run
    log = jobs.log(job, 0)  # both runs, one after the other (--open-mode=append)
    assert "DUE TO JOB REQUEUE" in log and f"Slurm job {job}_0 on node " in log
    assert "requeued 1 time:" in log.split("DUE TO JOB REQUEUE", 1)[1]
    assert trials_in_log(log.split("DUE TO JOB REQUEUE", 1)[1]) == sorted(t.number for t in rerun)
    assert retries[victim].number == min(t.number for t in rerun)  # the retry ran first
