"""Worker processes: the one place a worker's command line is built (:func:`worker_argv`),
recycling a worker into a fresh process (:func:`recycle`), and N local workers on one study
(:func:`run_workers`) with one progress line and one summary for all of them.

A worker's storage URL travels in its environment (``HPO_STORAGE``), never on a command line.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, NoReturn

from hpo.account import ACCOUNT_ENV, ACCOUNT_FILE_ENV, Account, Progress, best_text, summary
from hpo.errors import EXIT_FAILED, EXIT_OK, HpoError
from hpo.slurm import allocated_cpus
from hpo.worker import Terminated, WorkerResult, WorkerSpec, check_builder, check_spec, make_study_storage, rss_mb

__all__ = ["recycle", "run_workers", "shares", "worker_argv"]


def worker_argv(spec: WorkerSpec) -> list[str]:
    """``python -m hpo.run study ...`` for ``spec``: what a recycled worker and a launched one run."""
    if not spec.study_file:
        raise ValueError("a worker's command line needs spec.study_file")
    argv = [sys.executable, "-m", "hpo.run"] + (["--debug"] if spec.debug else [])
    argv += ["study", str(spec.study_file)]
    if spec.study_name is not None:
        argv += ["--study-name", spec.study_name]
    for item in spec.overrides:
        argv += ["--set", item]
    if spec.seed is not None:
        argv += ["--seed", str(spec.seed)]
    if spec.n_trials is not None:
        argv += ["--n-trials", str(spec.n_trials)]
    if spec.timeout is not None:
        argv += ["--timeout", repr(float(spec.timeout))]
    if not spec.artifacts:
        argv += ["--no-artifacts"]
    elif spec.artifact_dir is not None:
        argv += ["--artifact-dir", str(spec.artifact_dir)]
    if spec.tensorboard is not None:
        argv += ["--tensorboard", str(spec.tensorboard)] + (["--tensorboard-batches"] if spec.tensorboard_batches else [])
    if spec.threads is not None:
        argv += ["--threads", str(spec.threads)]
    if not spec.progress:
        argv += ["--no-progress"]
    if spec.verbose:
        argv += ["--verbose"]
    return argv


def recycle(spec: WorkerSpec, result: WorkerResult, account: Account, url: str) -> NoReturn:
    """Continue in a fresh process (same PID): TensorFlow does not give back all a trial used.

    The process replaces itself with :func:`worker_argv` of ``spec`` and the trials and time
    still to run; the storage URL and the command's account go along in the environment.
    """
    from hpo.storage import close_sqlite

    rss = rss_mb()
    left = "unlimited" if result.n_trials is None else result.n_trials
    print(
        f"worker recycled after {result.ran} trials"
        + (f" ({rss:.0f} MB resident)" if rss is not None else "")
        + f": continuing in a fresh process (study.recycle_after); {left} trials to go",
        flush=True,
    )
    sys.stderr.flush()
    argv = worker_argv(dataclasses.replace(spec, study_name=result.study_name, n_trials=result.n_trials, timeout=result.timeout))
    account.processes += 1
    os.environ[ACCOUNT_ENV] = account.to_json()
    os.environ["HPO_STORAGE"] = url
    close_sqlite()
    os.execv(argv[0], argv)


def shares(total: int | None, workers: int) -> list[int | None]:
    """Split ``total`` trials between workers as evenly as possible (None: unlimited each)."""
    if total is None:
        return [None] * workers
    base, extra = divmod(total, workers)
    return [base + (i < extra) for i in range(workers) if base + (i < extra) > 0]


def cpu_count() -> int:
    """CPUs this process may use: a Slurm task's allocation, else its affinity mask."""
    allocated = allocated_cpus()
    if allocated is not None:
        return allocated
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _counts(study: Any, before: set[int]) -> tuple[int, int]:
    """(search trials, repeats) finished in ``study`` since the trial ids ``before``."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t._trial_id not in before]
    repeats = sum(t.user_attrs.get("repeat_of") is not None for t in done)
    return len(done) - repeats, repeats


def run_workers(cfg: Any, url: str, spec: WorkerSpec, workers: int, *, quiet_start: bool = False) -> tuple[int, str]:
    """Run ``spec`` in ``workers`` processes on this machine sharing one study, its trials split
    between them, and wait for all.  Returns (exit code: 1 if any worker failed, study name).

    The study is created here, once, before the workers race for it.  Their output lines go to
    this process's stdout (``[worker i]`` before each when there are several); one progress line
    counts the trials of all of them; the summary covers the whole command.
    """
    from hpo.config import derive_seed
    from hpo.data import check_data, data_name
    from hpo.redact import scrub
    from hpo.storage import mask_url
    from hpo.study import artifact_folder, open_study

    check_spec(spec)
    if url.startswith("sqlite") and ":memory:" in url:
        raise HpoError("an in-memory SQLite storage cannot be shared by worker processes: use a file, PostgreSQL or MySQL")
    # Each worker loads the data itself: a missing or corrupt file, or a model builder that does
    # not fit it, stops all before the study exists.
    check_builder(cfg, *check_data(cfg))
    storage = make_study_storage(url, cfg)
    study = open_study(cfg, storage, spec.study_name, artifact_dir=artifact_folder(url, spec.artifact_dir))
    name = study.study_name
    n_trials = spec.n_trials if spec.n_trials is not None else cfg.study.n_trials
    split = shares(n_trials, workers)
    if not split:
        print(f"study {name!r} in {mask_url(url)}: 0 trials to run, no worker started", flush=True)
        return EXIT_OK, name
    threads = spec.threads or max(1, cpu_count() // len(split))
    before = {t._trial_id for t in study.get_trials(deepcopy=False)}
    account = Account(asked=n_trials)
    if not quiet_start:
        per = ", ".join("unlimited" if s is None else str(s) for s in split)
        print(
            f"study {name!r} in {mask_url(url)}: {data_name(cfg.data)}, {cfg.objective.monitor} >= {cfg.objective.target} "
            f"within {cfg.objective.max_epochs} epochs; {len(split)} worker processes x {threads} CPU threads, "
            f"trials per worker: {per}",
            flush=True,
        )
    env = dict(os.environ, HPO_STORAGE=url, OMP_NUM_THREADS=str(threads))
    env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
    progress = Progress(account, enabled=spec.progress)
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    finished = threading.Event()

    def pump(prefix: str, stream: Any) -> None:
        for line in stream:
            line = scrub(line, url)
            with lock:
                progress.write(prefix + line)

    def poll() -> None:  # the progress line: trials of all workers, from the storage
        while not finished.wait(2.0):
            try:
                searched, repeats = _counts(study, before)
                best = best_text(study, cfg) if progress.bar is not None else None
            except Exception:  # noqa: BLE001 - a missed update is no error
                continue
            with lock:
                progress.set(searched, repeats, best)

    with tempfile.TemporaryDirectory(prefix="hpo-workers-") as tmp:
        files = [Path(tmp) / f"worker-{i}.json" for i in range(len(split))]
        try:
            for i, share in enumerate(split):
                seed = None if cfg.study.seed is None else derive_seed(cfg.study.seed, i)  # else all would sample the same
                argv = worker_argv(
                    dataclasses.replace(spec, study_name=name, n_trials=share, seed=seed, progress=False, threads=threads)
                )
                child = Account(asked=share, banner=not quiet_start)  # quiet_start: the worker's banner instead
                child_env = dict(env, **{ACCOUNT_ENV: child.to_json(), ACCOUNT_FILE_ENV: str(files[i])})
                proc = subprocess.Popen(
                    argv, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
                )
                procs.append(proc)
                prefix = f"[worker {i}] " if len(split) > 1 else ""
                pumps.append(threading.Thread(target=pump, args=(prefix, proc.stdout), daemon=True))
                pumps[-1].start()
            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            codes = [p.wait() for p in procs]
        except KeyboardInterrupt as e:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
            for p in procs:
                p.wait()
            finished.set()
            progress.close()
            raise
        finished.set()
        for t in pumps:
            t.join(timeout=5)
        processes = 0
        for f in files:
            try:
                done = Account.from_json(f.read_text(encoding="utf-8"))
            except (OSError, ValueError, TypeError):
                continue  # a worker killed before it could say
            account.add(done)
            processes += done.processes
        account.processes = max(processes, len(split))
        progress.set(account.searched, account.ran - account.searched)
        progress.close()
    failed = [(i, c) for i, c in enumerate(codes) if c != 0]
    for i, c in failed:
        print(f"hpo: worker {i} exited with code {c}", file=sys.stderr)
    print(summary(study, cfg, account))
    return (EXIT_FAILED if failed else EXIT_OK), name
