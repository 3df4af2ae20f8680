"""Concurrency soak on a shared PostgreSQL study: workers killed with SIGKILL, restarted, checked.

N real worker processes (``python -m hpo.run study FILE --study-name NAME --n-trials T ...``)
share one study.  Every ~K seconds one of them, chosen at random among those running a trial, is
killed with SIGKILL -- the kill leaves that trial RUNNING -- and restarted at once with the part
of its share it has not finished.  When every share is done, the soak waits until the last killed
trial's heartbeat is older than the grace period, fails the stale trials (Optuna's
``fail_stale_trials``, which runs ``RetryHeartbeatStaleTrialCallback``: each becomes FAIL and is
re-queued as a WAITING trial) and runs one more worker for the trials still waiting.  Nothing
else would: a stale trial is only failed when some process starts a trial (or calls
``fail_stale_trials``) after the grace period.

Then it checks, over the whole study:

* every trial is COMPLETE or PRUNED, or FAIL with exactly one retry (a later trial whose system
  attribute ``retry_history`` ends with its number); nothing is RUNNING or WAITING;
* trial numbers are unique and exactly 0..n-1;
* every COMPLETE or PRUNED trial has all the user attributes of ``hpo.objective.TRIAL_ATTRS``,
  a history of ``epochs`` epochs and an intermediate value for each of them;
* every worker exited 0 unless the soak killed it, and the shares add up: workers x trials
  finished trials plus the retries run at the end.

A FAIL trial that no kill explains is reported (``failed_while_alive``), not counted as a
violation when it was retried: on an overloaded machine a live worker can miss its heartbeats
for the grace period, and the stale check then fails and re-queues its trial like a dead one's
(the worker goes on; the soak restarts it for its remaining share when it ends short).

It prints a summary and, last, one JSON line; the exit code is 1 when an invariant fails.

    python scripts/soak.py                                    # 4 workers x 25 trials, a kill every ~20 s
    python scripts/soak.py --workers 4 --trials 2 --kill-every 5 --max-kills 2 --heartbeat-interval 1 --grace-period 5

Storage: ``--storage URL`` (else ``HPO_STORAGE``); without either, a fresh database is created on
the PostgreSQL server of ``HPO_TEST_POSTGRES`` (default ``postgresql+psycopg2://postgres@127.0.0.1:5432/test``)
and dropped afterwards (``--keep`` keeps it).  The URL reaches the workers in their environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from hpo.api import load_config  # noqa: E402
from hpo.storage import make_storage, mask_url  # noqa: E402
from hpo.study import open_study, trial_history  # noqa: E402

PG_ADMIN = os.environ.get("HPO_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
HOST = socket.gethostname()
POLL = 0.25  # seconds between looks at the workers


def trial_attrs() -> tuple[str, ...]:
    """``hpo.objective.TRIAL_ATTRS`` without importing Keras into this process."""
    import ast

    tree = ast.parse((REPO / "hpo" / "objective.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "TRIAL_ATTRS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise SystemExit("hpo/objective.py defines no TRIAL_ATTRS")


@contextlib.contextmanager
def fresh_postgres(keep: list[bool]) -> Iterator[str]:
    """A new database on the server of ``PG_ADMIN``, dropped at the end unless ``keep[0]``."""
    import sqlalchemy

    name = f"hpo_soak_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(PG_ADMIN, connect_args={"connect_timeout": 5}, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        if keep[0]:
            print(f"soak: database kept: {mask_url(url)}", flush=True)
        else:
            with admin.connect() as c:
                c.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Slot:
    """One worker place: its share of trials and every process that has run it."""

    index: int
    share: int
    proc: subprocess.Popen | None = None
    pids: list[int] = field(default_factory=list)
    starts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)  # pids the soak killed
    done: bool = False


class Soak:
    def __init__(self, args: argparse.Namespace, url: str):
        self.args = args
        self.url = url
        self.rng = random.Random(args.seed)
        self.sets = [
            f"study.pruner={args.pruner}",
            f"study.heartbeat_interval={args.heartbeat_interval}",
            f"study.grace_period={args.grace_period}",
            f"study.max_retries={args.max_retries}",
            *args.overrides,
        ]
        self.cfg = load_config(args.study_file, self.sets)
        self.storage = make_storage(
            url,
            heartbeat_interval=self.cfg.study.heartbeat_interval,
            grace_period=self.cfg.study.grace_period,
            max_retry=self.cfg.study.max_retries,
        )
        # Created once here, before the workers race for it.
        self.study = open_study(self.cfg, self.storage, args.study_name)
        self.slots = [Slot(i, args.trials) for i in range(args.workers)]
        self.threads = max(
            1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) // args.workers
        )
        self.log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="hpo-soak-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.kills: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.end_stale: list[int] = []
        self.end_trials = 0
        self.started = time.monotonic()

    # -- workers ---------------------------------------------------------------------------

    def argv(self, n_trials: int, seed: int) -> list[str]:
        argv = [sys.executable, "-m", "hpo.run", "study", str(self.args.study_file), "--study-name", self.study.study_name]
        argv += [
            "--n-trials",
            str(n_trials),
            "--seed",
            str(seed),
            "--no-progress",
            "--no-artifacts",
            "--threads",
            str(self.threads),
        ]
        for item in self.sets:
            argv += ["--set", item]
        return argv

    def env(self) -> dict[str, str]:
        env = dict(os.environ, HPO_STORAGE=self.url, OMP_NUM_THREADS=str(self.threads))
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def start(self, slot: Slot, n_trials: int) -> None:
        seed = self.args.seed + slot.index + len(self.slots) * slot.starts  # a new seed per start
        log = open(self.log_dir / f"worker-{slot.index}.log", "a", encoding="utf-8")  # noqa: SIM115
        log.write(f"--- start {slot.starts} ({n_trials} trials) at {self.elapsed():.1f} s\n")
        log.flush()
        slot.proc = subprocess.Popen(self.argv(n_trials, seed), cwd=REPO, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        slot.pids.append(slot.proc.pid)
        slot.starts += 1

    def finished_by(self, slot: Slot) -> int:
        """COMPLETE or PRUNED trials run by the processes of ``slot`` (user attr ``worker``)."""
        tags = {f"{HOST}:{pid}" for pid in slot.pids}
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        return sum(t.user_attrs.get("worker") in tags for t in trials)

    def running_trial_of(self, pid: int) -> int | None:
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker") == f"{HOST}:{pid}":
                return t.number
        return None

    def state_of(self, number: int) -> TrialState:
        return next(t.state for t in self.study.get_trials(deepcopy=False) if t.number == number)

    def kill_one(self) -> bool:
        """SIGKILL a random worker among those running a trial; False if none is."""
        alive = [s for s in self.slots if s.proc is not None and s.proc.poll() is None]
        busy = [(s, n) for s in alive if (n := self.running_trial_of(s.proc.pid)) is not None]
        if not busy:
            return False
        slot, number = self.rng.choice(busy)
        pid = slot.proc.pid
        slot.proc.send_signal(signal.SIGKILL)
        slot.proc.wait()
        slot.killed.add(pid)
        # A trial that is still RUNNING now was killed mid-way: no one but the stale check can end it.
        hit = self.state_of(number) == TrialState.RUNNING
        self.kills.append({"at": round(self.elapsed(), 1), "worker": slot.index, "pid": pid, "trial": number if hit else None})
        print(
            f"{self.elapsed():7.1f} s  SIGKILL worker {slot.index} (pid {pid})"
            + (f" in trial {number}" if hit else f" just after its trial {number} ended"),
            flush=True,
        )
        return True

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stop_workers(self) -> None:
        for s in self.slots:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()

    def run_workers(self) -> None:
        for slot in self.slots:
            self.start(slot, slot.share)
        a = self.args
        next_kill = self.started + self.rng.uniform(0.75, 1.25) * a.kill_every
        while not all(s.done for s in self.slots):
            if self.elapsed() > a.timeout:
                self.violations.append(f"timed out after {a.timeout} s with workers still running")
                self.stop_workers()
                return
            now = time.monotonic()
            budget = a.max_kills <= 0 or len(self.kills) < a.max_kills
            if a.kill_every > 0 and budget and now >= next_kill and (a.duration <= 0 or self.elapsed() < a.duration):
                if self.kill_one():  # else: no worker in a trial (all starting up): try at the next look
                    next_kill = now + self.rng.uniform(0.75, 1.25) * a.kill_every
            for slot in self.slots:
                if slot.done or slot.proc is None or slot.proc.poll() is None:
                    continue
                code = slot.proc.returncode
                slot.exit_codes.append(code)
                killed = slot.proc.pid in slot.killed
                if not killed and code != 0:
                    self.violations.append(f"worker {slot.index} (pid {slot.proc.pid}) exited with code {code}")
                left = slot.share - self.finished_by(slot)
                if left > 0 and (killed or code == 0):
                    # (exit 0 with trials left: one of its trials was failed under it by a stale
                    # check, as happens when a worker misses its heartbeats on an overloaded machine)
                    self.start(slot, left)
                    why = "" if killed else " (a trial of it was failed by a stale check)"
                    print(
                        f"{self.elapsed():7.1f} s  restarted worker {slot.index} for its {left} remaining trials{why}", flush=True
                    )
                else:
                    slot.done = True
                    if left > 0:
                        self.violations.append(f"worker {slot.index} exited {code} with {left} of its trials not finished")
            time.sleep(POLL)

    # -- the end: fail stale trials after the grace period, run their retries ------------------

    def drain(self) -> None:
        a = self.args
        grace = self.cfg.study.grace_period or 2 * self.cfg.study.heartbeat_interval
        for _ in range(a.max_retries + 1):
            running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if running:
                # A killed trial's last heartbeat is at most its kill; the stale check compares the
                # database's clock, so wait the grace period plus one heartbeat from the newest kill.
                last = max((k["at"] for k in self.kills), default=0.0)
                wait = last + grace + self.cfg.study.heartbeat_interval + 1 - self.elapsed()
                if wait > 0:
                    print(
                        f"{self.elapsed():7.1f} s  {len(running)} trials RUNNING; waiting {wait:.0f} s for the grace period",
                        flush=True,
                    )
                    time.sleep(wait)
                before = {t.number for t in running}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(self.study)
                failed = sorted(n for n in before if self.state_of(n) == TrialState.FAIL)
                self.end_stale += failed
                print(f"{self.elapsed():7.1f} s  stale trials failed and re-queued at the end: {failed or 'none'}", flush=True)
            waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not waiting:
                break
            print(f"{self.elapsed():7.1f} s  running the {len(waiting)} waiting retries with one more worker", flush=True)
            log = self.log_dir / "end.log"
            with open(log, "a", encoding="utf-8") as f:
                proc = subprocess.Popen(
                    self.argv(len(waiting), a.seed + 10_000), cwd=REPO, env=self.env(), stdout=f, stderr=subprocess.STDOUT
                )
                code = proc.wait()
            self.end_trials += self.finished_by(Slot(-1, 0, pids=[proc.pid]))
            if code != 0:
                self.violations.append(f"the worker running the waiting retries exited with code {code} (see {log})")
                break

    # -- invariants -------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        trials = self.study.get_trials(deepcopy=False)
        v = self.violations
        numbers = [t.number for t in trials]
        duplicates = sorted(n for n, c in Counter(numbers).items() if c > 1)
        missing = sorted(set(range(len(numbers))) - set(numbers))
        if duplicates:
            v.append(f"duplicate trial numbers {duplicates}")
        if missing:
            v.append(f"trial numbers missing from 0..{len(numbers) - 1}: {missing}")
        by_number = {t.number: t for t in trials}
        states = Counter(t.state.name for t in trials)
        for name in ("RUNNING", "WAITING"):
            left = sorted(t.number for t in trials if t.state.name == name)
            if left:
                v.append(f"trials left {name}: {left}")

        retries_of: dict[int, list[int]] = {}
        for t in trials:
            history = t.system_attrs.get("retry_history")
            if history:
                if "failed_trial" not in t.system_attrs or t.system_attrs["failed_trial"] != history[0]:
                    v.append(
                        f"trial {t.number}: failed_trial {t.system_attrs.get('failed_trial')} != retry_history[0] {history[0]}"
                    )
                retries_of.setdefault(history[-1], []).append(t.number)
        hit = {k["trial"] for k in self.kills if k["trial"] is not None}
        failed = sorted(t.number for t in trials if t.state == TrialState.FAIL)
        lost: list[int] = []
        exhausted: list[int] = []
        for n in failed:
            retries = retries_of.get(n, [])
            if not retries:
                attempts = len(by_number[n].system_attrs.get("retry_history", [])) + 1
                if attempts > self.cfg.study.max_retries:  # the callback's own limit
                    exhausted.append(n)
                    v.append(
                        f"trial {n} is FAIL after {attempts} attempts: study.max_retries = {self.cfg.study.max_retries} used up"
                    )
                else:
                    lost.append(n)
                    v.append(f"trial {n} is FAIL and was not retried")
            elif len(retries) > 1:
                v.append(f"trial {n} was retried {len(retries)} times: {retries}")
            elif retries[0] < n:
                v.append(f"trial {n}'s retry {retries[0]} has a lower number")
            elif any(by_number[retries[0]].params.get(k) != x for k, x in by_number[n].params.items()):
                # (a trial killed while sampling has only some parameters: its retry samples the rest)
                v.append(f"trial {n}'s retry {retries[0]} has other parameters")
        for n in sorted(retries_of):
            if by_number.get(n) is None or by_number[n].state != TrialState.FAIL:
                v.append(f"trial {n} was retried by {retries_of[n]} but is not FAIL")
        for n in sorted(hit):
            if by_number[n].state != TrialState.FAIL:
                v.append(f"killed trial {n} is {by_number[n].state.name}, not FAIL")
        lost += [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]

        attrs = trial_attrs()
        monitor = self.cfg.objective.monitor
        for t in trials:
            if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
                continue
            absent = [k for k in (*attrs, f"best_{monitor}") if k not in t.user_attrs]
            if absent:
                v.append(f"{t.state.name} trial {t.number} lacks user attrs {absent}")
                continue
            epochs = t.user_attrs["epochs"]
            if not epochs or sorted(t.intermediate_values) != list(range(epochs)):
                v.append(
                    f"{t.state.name} trial {t.number}: intermediate values at {sorted(t.intermediate_values)}, epochs {epochs}"
                )
            if len((trial_history(t) or {}).get(monitor, [])) != epochs:
                v.append(f"{t.state.name} trial {t.number}: history of {monitor} has not {epochs} epochs")

        finished = states["COMPLETE"] + states["PRUNED"]
        expected = sum(s.share for s in self.slots) + self.end_trials
        if finished != expected:
            v.append(f"{finished} finished trials, expected {expected} (shares) + retries run at the end")
        return {
            "ok": not v,
            "trials": len(trials),
            "states": {s.name: states[s.name] for s in TrialState},
            "finished": finished,
            "workers": len(self.slots),
            "trials_per_worker": self.args.trials,
            "kills": len(self.kills),
            "kills_in_trial": len(hit),
            "killed_trials": sorted(hit),
            "restarts": sum(s.starts - 1 for s in self.slots),
            "failed_trials": failed,
            # FAIL without a kill: a live worker missed its heartbeats for the grace period (an
            # overloaded machine) and a stale check failed and re-queued its trial
            "failed_while_alive": [n for n in failed if n not in hit],
            "retries": sum(len(r) for r in retries_of.values()),
            "longest_retry_chain": max((len(t.system_attrs.get("retry_history", [])) for t in trials), default=0),
            "retries_used_up": exhausted,
            "stale_failed_at_end": self.end_stale,
            "retries_run_at_end": self.end_trials,
            "lost": len(lost),
            "duplicate_numbers": len(duplicates),
            "missing_numbers": len(missing),
            "worker_exit_codes": sorted(Counter(c for s in self.slots for c in s.exit_codes).items()),
            "wall_seconds": round(self.elapsed(), 1),
            "violations": v,
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "study_file", nargs="?", default=str(REPO / "studies" / "tiny.toml"), help="study file (default studies/tiny.toml)"
    )
    p.add_argument(
        "--storage", metavar="URL", help="PostgreSQL URL (default: $HPO_STORAGE, else a fresh database, dropped afterwards)"
    )
    p.add_argument("--keep", action="store_true", help="keep the fresh database")
    p.add_argument("--study-name", default="soak", help="study name (default soak)")
    p.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    p.add_argument("--trials", type=int, default=25, help="finished trials each worker place runs, across restarts (default 25)")
    p.add_argument(
        "--kill-every",
        type=float,
        default=20.0,
        metavar="S",
        help="SIGKILL one worker every S seconds, +-25%% (default 20; 0: never)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        metavar="S",
        help="stop killing after S seconds (default 0: until the shares are done)",
    )
    p.add_argument("--max-kills", type=int, default=0, metavar="N", help="kill at most N times (default 0: no limit)")
    p.add_argument(
        "--timeout", type=float, default=3 * 3600, metavar="S", help="give up (and fail) after S seconds (default 10800)"
    )
    p.add_argument("--heartbeat-interval", type=int, default=2, metavar="S", help="study.heartbeat_interval (default 2)")
    p.add_argument("--grace-period", type=int, default=6, metavar="S", help="study.grace_period (default 6)")
    p.add_argument("--pruner", default="median", help="study.pruner (default median, so that some trials end PRUNED)")
    p.add_argument(
        "--max-retries",
        type=int,
        default=50,
        help="study.max_retries (default 50: with frequent kills one trial's retries can be killed again and again)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the kill schedule and base of the workers' sampler seeds")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more study-file overrides, for every worker",
    )
    p.add_argument("--log-dir", metavar="DIR", help="worker logs (default: a new temporary folder)")
    args = p.parse_args(argv)
    if args.workers < 1 or args.trials < 1:
        p.error("--workers and --trials must be >= 1")
    return args


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = args.storage or os.environ.get("HPO_STORAGE")
    keep = [args.keep]  # a fresh database is also kept when an invariant fails, for a look
    with contextlib.ExitStack() as stack:
        if url is None:
            url = stack.enter_context(fresh_postgres(keep))
        if not url.startswith("postgresql"):
            print(f"soak: warning: {mask_url(url)} is not PostgreSQL", file=sys.stderr)
        soak = Soak(args, url)
        print(
            f"soak: {args.workers} workers x {args.trials} trials of {args.study_file} on {mask_url(url)} "
            f"(study {soak.study.study_name!r}), SIGKILL every ~{args.kill_every:g} s, heartbeat "
            f"{args.heartbeat_interval} s, grace {args.grace_period} s, {soak.threads} CPU threads per worker; logs in {soak.log_dir}",
            flush=True,
        )
        try:
            soak.run_workers()
            soak.drain()
            result = soak.check()
            keep[0] = keep[0] or not result["ok"]
        finally:  # also on Ctrl-C or SIGTERM: no worker outlives the soak
            soak.stop_workers()
            soak.storage.engine.dispose()
    s = result["states"]
    print(
        f"\n{result['trials']} trials in {result['wall_seconds']} s: {s['COMPLETE']} COMPLETE, {s['PRUNED']} PRUNED, "
        f"{s['FAIL']} FAIL (all retried: {result['retries'] == s['FAIL'] and not result['lost']}), "
        f"{s['RUNNING']} RUNNING, {s['WAITING']} WAITING"
    )
    print(
        f"kills {result['kills']} ({result['kills_in_trial']} in a trial), FAIL without a kill (missed heartbeats) "
        f"{len(result['failed_while_alive'])}, restarts {result['restarts']}, "
        f"retries {result['retries']} ({result['retries_run_at_end']} run at the end, longest chain "
        f"{result['longest_retry_chain']}), lost {result['lost']}, "
        f"numbers 0..{result['trials'] - 1}: {result['duplicate_numbers']} duplicated, {result['missing_numbers']} missing"
    )
    for line in result["violations"]:
        print(f"VIOLATION: {line}")
    print("OK: every invariant holds" if result["ok"] else f"FAILED: {len(result['violations'])} violations")
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
