"""The command line: ``python -m hpo.run study|list|report|dashboard|proxy ...``.

Exit codes: 0 done, 2 bad input (one line on stderr, nothing stored changed), 1 a worker
stopped on an unexpected error, 3 a worker stopped after ``study.max_consecutive_failures``
failed trials in a row, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

# Before TensorFlow is imported anywhere: keep its C++ start-up chatter off the terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's C++ log lines; hpo reports its errors itself

from hpo.errors import HpoError  # noqa: E402

__all__ = ["main", "cli", "build_parser"]

EXIT_USAGE = 2
EXIT_FAILURES = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. a cluster preempting the job): handled like Ctrl-C, exit 143."""


class Signals:
    """When SIGINT and SIGTERM take effect.

    The first signal raises :class:`KeyboardInterrupt` (:class:`Terminated` for SIGTERM) at
    once, except while :attr:`hold` is set: then it is only remembered (:attr:`received`), and
    the study loop stops at the next point where no trial is half-stored.  ``study`` holds
    signals while Optuna creates or stores a trial and while a trained trial is recorded, and
    lets them through while a trial samples, builds and trains -- so a signal ends the running
    trial as FAIL, or lets it finish being stored, and never leaves it RUNNING.  Later signals
    are ignored: the clean-up they would cut short takes a moment.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self.hold = False

    @property
    def code(self) -> int:
        return EXIT_TERMINATED if self.received == signal.SIGTERM else EXIT_INTERRUPTED

    def exception(self) -> KeyboardInterrupt:
        return Terminated() if self.received == signal.SIGTERM else KeyboardInterrupt()

    def handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            return
        self.received = signum
        if not self.hold:
            self.hold = True
            raise self.exception()


_signals = Signals()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _number(kind: type, minimum: float, what: str) -> Any:
    """An argparse type: ``kind(text)`` at least ``minimum``, else a one-line usage error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, but got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, but got {value}")
        return value

    return parse


_non_negative_int = _number(int, 0, "a whole number")
_non_negative_float = _number(float, 0, "a number of seconds")
_positive_int = _number(int, 1, "a whole number")


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


DEBUG_HELP = "on bad input, show the full traceback (the password of a storage URL hidden) before the one-line error"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m hpo.run",
        description=(
            "hpo: how few training epochs does it take to reach a target accuracy, and which "
            "architecture gets there? Optuna studies of Keras models, stored in an RDB."
        ),
        epilog="Storage: --storage URL, else $HPO_STORAGE, else sqlite:///studies/hpo.db. Exit codes: 0 ok, 1 a worker failed, 2 bad input, 3 too many failed trials in a row, 130/143 interrupted.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "study",
        help="run trials of a study file (creates the study or adds to it)",
        description=(
            "Run trials of the study described by STUDY_FILE. The study is created on first use "
            "and joined by name afterwards: running the same command again adds trials. Each "
            "trial trains until the monitored accuracy reaches the target (its cost is the "
            "epochs needed), is pruned, or runs out of epochs (cost max_epochs + 1 + the gap "
            "to the target)."
        ),
    )
    p.add_argument("study_file", metavar="STUDY_FILE", help="TOML study file, e.g. studies/fashion_dense.toml")
    _storage_arg(p)
    p.add_argument(
        "--study-name", type=_non_empty, metavar="NAME", help="study name (default: study.name in the file, else the file's stem)"
    )
    p.add_argument(
        "--n-trials", type=_non_negative_int, metavar="N", help="how many trials this command runs (default: study.n_trials)"
    )
    p.add_argument(
        "--timeout",
        type=_non_negative_float,
        metavar="S",
        help="stop starting new trials after S seconds (default: study.timeout)",
    )
    p.add_argument("--seed", type=_non_negative_int, metavar="N", help="sampler seed (same as --set study.seed=N)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a study-file key; VALUE is TOML (a bare word is a string), e.g. "
        "--set objective.target=0.9 --set 'space.dense.units={low=32, high=512, log=true}'",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _artifact_arg(p)
    p.add_argument("--no-artifacts", action="store_true", help="write no per-trial artifacts (plots, histories, models)")
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="write TensorBoard logs per trial to DIR/STUDY_NAME/trial-NNNN (view: tensorboard --logdir DIR)",
    )
    p.add_argument(
        "--tensorboard-batches",
        action="store_true",
        help="with --tensorboard: also log per batch (one point per 32 steps, the steps run per execution)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run N worker processes on this machine sharing the study; --n-trials is split between them "
        "(use PostgreSQL or MySQL when workers run on several machines)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="CPU threads TensorFlow may use in each worker (default: the machine's cores divided by --workers)",
    )

    p = sub.add_parser(
        "proxy",
        help="serve a storage to many workers through Optuna's gRPC proxy",
        description=(
            "Serve the storage at --storage through Optuna's gRPC storage proxy, so that many workers "
            "(--storage grpc://HOST:PORT) share one study without each holding database connections. "
            "Runs until interrupted. Workers behind the proxy have no heartbeat: a crashed worker's "
            "trial stays RUNNING."
        ),
    )
    _storage_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=_port, default=13000, help="port to listen on (default 13000)")

    p = sub.add_parser(
        "list", help="list the studies in a storage", description="List the studies with trial counts and best values."
    )
    _storage_arg(p)

    p = sub.add_parser(
        "report",
        help="write a CSV, a markdown summary and figures of a study",
        description=(
            "Write OUT/trials.csv (one row per trial), OUT/summary.md (best trial, counts by state "
            "and stop reason, test-set accuracy of the best trial's saved model) and PNG figures: "
            "optimization history, epochs to target vs. parameter count, parameter importances, "
            "learning curves of the best trials."
        ),
    )
    p.add_argument("study_name", metavar="STUDY_NAME", help="name of a study in the storage (see: python -m hpo.run list)")
    _storage_arg(p)
    p.add_argument("--out", metavar="DIR", help="output folder (default: reports/STUDY_NAME)")
    _artifact_arg(p, "where the best trial's saved model is read from, for the test-set accuracy")
    p.add_argument("--top", type=_positive_int, default=4, metavar="K", help="learning curves of the K best trials (default 4)")

    p = sub.add_parser(
        "confirm",
        help="re-run a study's fastest configurations over more seeds and print their medians",
        description=(
            "Re-run the K configurations with the fewest epochs to the target (single trials) N more "
            "times each, every run with its own seed and never pruned, into the same study; then print "
            "each configuration's median epochs-to-target and range, and the study's answer. For "
            "studies run with confirmation off (study.confirm_seeds < 2) or made before it existed."
        ),
    )
    p.add_argument("study_name", metavar="STUDY_NAME", help="name of a study in the storage (see: python -m hpo.run list)")
    _storage_arg(p)
    p.add_argument("--top", type=_positive_int, default=3, metavar="K", help="configurations to confirm (default 3)")
    p.add_argument("--seeds", type=_positive_int, default=2, metavar="N", help="more runs of each (default 2)")
    p.add_argument(
        "--study-file",
        metavar="FILE",
        help="the study file, for studies that do not store theirs (default: the one stored on the study)",
    )
    _artifact_arg(p)
    p.add_argument("--no-artifacts", action="store_true", help="write no per-trial artifacts")
    p.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=_positive_int, metavar="N", help="CPU threads TensorFlow may use")

    p = sub.add_parser(
        "dashboard",
        help="serve optuna-dashboard over the storage and the artifact store",
        description="Serve optuna-dashboard (all studies of the storage, with per-trial artifacts) until Ctrl-C.",
    )
    _storage_arg(p)
    _artifact_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    for p in sub.choices.values():  # also after the command: python -m hpo.run study ... --debug
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def _artifact_arg(p: argparse.ArgumentParser, what: str = "per-trial artifacts: learning curves, histories, best models") -> None:
    p.add_argument("--artifact-dir", metavar="DIR", help=f"artifact store folder, {what} (default: studies/artifacts)")


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"a port must be in 1..65535, but got {value}")
    return value


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        type=_non_empty,
        metavar="URL",
        help="storage URL: sqlite:///FILE, postgresql+psycopg2://USER@HOST/DB, mysql+pymysql://USER@HOST/DB, "
        "grpc://HOST:PORT (default: $HPO_STORAGE, else sqlite:///studies/hpo.db)",
    )


# --------------------------------------------------------------------------------------------
# Commands


def _check_folder(path: str | os.PathLike, flag: str, *, writable: bool = True) -> None:
    """Bad input writes nothing: a folder a command will write to must exist or be creatable,
    checked before anything (the folder included) is created.  With ``writable=False`` an
    existing folder that cannot be written is not bad input (the artifact folder: that costs
    the artifacts, with a warning, not the trials)."""
    from pathlib import Path

    folder = Path(path)
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if existing == folder and not folder.is_dir():
        raise HpoError(f"{flag}: {str(folder)!r} is a file, not a folder")
    if not existing.is_dir():
        raise HpoError(f"{flag}: cannot create folder {str(folder)!r}: {str(existing)!r} is a file")
    if (writable or existing != folder) and not os.access(existing, os.W_OK | os.X_OK):
        raise HpoError(f"{flag}: cannot write to folder {str(existing)!r}")


def cmd_study(args: argparse.Namespace) -> int:
    from hpo.api import load_config

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"study.seed={args.seed}")
    return _run_study(args, load_config(args.study_file, overrides))


def _run_study(args: argparse.Namespace, cfg: Any, on_open: Any = None) -> int:
    """One worker's study run (or ``--workers N`` of them); ``on_open(study)`` runs once the
    study is open, before the first trial."""
    from hpo.data import prepare
    from hpo.quiet import import_tensorflow
    from hpo.storage import mask_url, resolve_url
    from hpo.study import open_study

    n_trials = args.n_trials if args.n_trials is not None else cfg.study.n_trials
    timeout = args.timeout if args.timeout is not None else cfg.study.timeout
    url = resolve_url(args.storage)
    if args.tensorboard_batches and not args.tensorboard:
        raise HpoError("--tensorboard-batches needs --tensorboard DIR")
    if args.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise HpoError("--tensorboard needs the tensorboard package: pip install 'hpo[tensorboard]'")
        _check_folder(args.tensorboard, "--tensorboard")
    if not args.no_artifacts:
        from hpo.artifacts import DEFAULT_ARTIFACT_DIR

        _check_folder(args.artifact_dir or DEFAULT_ARTIFACT_DIR, "--artifact-dir", writable=False)
    if args.workers > 1:
        return _run_workers(args, cfg, url, n_trials)
    split = prepare(cfg.data)  # data errors surface before anything is stored
    storage = _make_storage(url, cfg)
    study = open_study(cfg, storage, args.study_name)
    if on_open is not None:
        on_open(study)
    artifact_store = None
    if not args.no_artifacts:
        from hpo.artifacts import make_artifact_store

        artifact_store = make_artifact_store(args.artifact_dir)
        _one_line_artifact_warnings(args.artifact_dir or DEFAULT_ARTIFACT_DIR)

    import_tensorflow()
    if args.threads is not None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from hpo.errors import TrialFailed
    from hpo.objective import Objective

    callbacks, keras_callbacks = [], []
    if artifact_store is not None:
        from hpo.artifacts import ArtifactWriter

        callbacks.append(ArtifactWriter(artifact_store, cfg))
    if args.tensorboard:
        from hpo.artifacts import tensorboard_factory

        keras_callbacks.append(tensorboard_factory(args.tensorboard, study.study_name, batches=args.tensorboard_batches))
    signals = _signals
    run = _StudyRun(cfg, signals)
    objective = run.wrap(
        _tag_worker(
            Objective(cfg, split, callbacks=tuple(callbacks), keras_callbacks=tuple(keras_callbacks), on_trained=run.trained)
        )
    )
    print(
        f"study {study.study_name!r} in {mask_url(url)}: {cfg.data.dataset} ({len(split.x_train)} train / "
        f"{len(split.x_val)} validation), {cfg.objective.monitor} >= {cfg.objective.target} "
        f"within {cfg.objective.max_epochs} epochs; running {n_trials if n_trials is not None else 'unlimited'} trials",
        flush=True,
    )
    _one_line_thread_errors(url)
    held = len(study.get_trials(deepcopy=False))
    if held and cfg.study.seed is not None:
        # The study holds trials already (a re-run, or this worker's previous process): seed the
        # sampler past them, or it would repeat the random draws of the run that made them.
        from hpo.search import make_sampler

        study.sampler = make_sampler(cfg, seed_offset=held * 1_000_003)  # far from other workers' seed + i
    recycle = cfg.study.recycle_after
    chunk = n_trials if not recycle or (n_trials is not None and n_trials <= recycle) else recycle
    budget = _Budget(n_trials, recycle or None, cfg.study.confirming)
    trial_callbacks = [run.after_trial]
    if cfg.study.confirming:
        from hpo.answer import Confirmation

        trial_callbacks.append(Confirmation(cfg.study.confirm_seeds, on_answer=_note_saver(cfg)))
    trial_callbacks.append(budget.after_trial)
    capped = False
    if not args.debug:
        _no_traceback_for_failed_trials()
    started = time.perf_counter()
    signals.hold = True  # from here on a signal ends a trial only while it trains (Signals)
    try:
        if cfg.study.max_trials is None:
            if budget.more(study):
                _optimize(
                    study,
                    objective,
                    # Confirming, repeats do not count as trials: the budget stops the study.
                    n_trials=None if cfg.study.confirming else chunk,
                    timeout=timeout,
                    catch=(TrialFailed,),
                    callbacks=trial_callbacks,
                    gc_after_trial=False,  # the objective clears Keras' session and collects itself
                    show_progress_bar=not args.no_progress
                    and not cfg.study.confirming
                    and (chunk is not None or timeout is not None),
                )
        elif _optimize_capped(study, objective, cfg.study.max_trials, budget, timeout, run, trial_callbacks):
            capped = True
            print(f"study.max_trials = {cfg.study.max_trials} reached: this worker stops", flush=True)
    except KeyboardInterrupt:
        if signals.received is None:
            raise
        # Optuna stored the running trial as FAIL; run.interrupted() re-queues it.
    except Exception as e:
        cause = _database_error_in(e)
        if cause is None:
            raise
        from hpo.storage import _scrub

        print(
            f"hpo: storage {mask_url(url)} failed mid-study: {_scrub(str(getattr(cause, 'orig', cause)), url)}", file=sys.stderr
        )
        return 1
    if signals.received is not None:
        return run.interrupted(study, storage)
    own = _trials_of(study, {os.getpid()})  # other workers may have added trials meanwhile
    seconds = time.perf_counter() - started
    print(summary(study, cfg, len(study.get_trials(deepcopy=False)) - own, seconds))
    if run.failures_stopped:
        print(
            f"hpo: stopped: {run.failures} trials in a row failed (study.max_consecutive_failures = "
            f"{cfg.study.max_consecutive_failures}), the last one with {run.last_error}; fix the cause and run the same "
            "command to continue",
            file=sys.stderr,
        )
        return EXIT_FAILURES
    if budget.recycle_due and budget.more(study) and not capped and (timeout is None or seconds < timeout):
        left = None if n_trials is None else max(0, n_trials - budget.searched)
        _recycle(args, budget.ran, left, None if timeout is None else timeout - seconds)
    return 0


class _Budget:
    """The trials one worker process runs: ``n_trials`` search trials and, when confirming, the
    waiting repeats of answers being confirmed (which do not count as trials); at most
    ``recycle_after`` trials of either kind before the process recycles itself.

    Its :meth:`after_trial` is an Optuna callback that stops the study when either is done.
    """

    def __init__(self, n_trials: int | None, recycle_after: int | None, confirming: bool):
        self.n_trials = n_trials
        self.recycle_after = recycle_after
        self.confirming = confirming
        self.ran = 0  # trials this process ran
        self.searched = 0  # of which not repeats

    @property
    def recycle_due(self) -> bool:
        return self.recycle_after is not None and self.ran >= self.recycle_after

    def more(self, study: Any) -> bool:
        """True while this worker has trials to run (recycling aside)."""
        from optuna.trial import TrialState

        if self.n_trials is None or self.searched < self.n_trials:
            return True
        if not self.confirming:
            return False
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        return any(t.user_attrs.get("repeat_of") is not None for t in waiting)

    def after_trial(self, study: Any, trial: Any) -> None:
        self.ran += 1
        if trial.user_attrs.get("repeat_of") is None:
            self.searched += 1
        if self.recycle_due or not self.more(study):
            study.stop()


def _note_saver(cfg: Any) -> Any:
    """``on_answer`` of :class:`hpo.answer.Confirmation`: the study note shows the new answer."""
    from hpo.study import save_note

    def save(study: Any, answer: Any) -> None:
        save_note(study, cfg, answer)

    return save


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return None


def _recycle(args: argparse.Namespace, ran: int, n_trials: int | None, timeout: float | None) -> None:
    """Continue in a fresh process (same PID): TensorFlow does not give back all a trial used.

    The process replaces itself with ``python -m hpo.run`` and the same arguments, the trials
    and time still to run appended (argparse keeps the last value of a flag).
    """
    rss = _rss_mb()
    argv = [sys.executable, "-m", "hpo.run", *args.argv]
    if n_trials is not None:
        argv += ["--n-trials", str(n_trials)]
    if timeout is not None:
        argv += ["--timeout", f"{timeout:.3f}"]
    print(
        f"worker recycled after {ran} trials"
        + (f" ({rss:.0f} MB resident)" if rss is not None else "")
        + f": continuing in a fresh process (study.recycle_after); {'unlimited' if n_trials is None else n_trials} trials to go",
        flush=True,
    )
    sys.stderr.flush()
    from hpo.storage import close_sqlite

    close_sqlite()
    os.execv(sys.executable, argv)


class _StudyRun:
    """One worker's study loop: signals (see :class:`Signals`), consecutive failures, re-queueing."""

    def __init__(self, cfg: Any, signals: Signals):
        self.cfg = cfg
        self.signals = signals
        self.interrupted_trial: int | None = None  # number of the trial a signal ended
        self.failures = 0  # failed trials in a row
        self.last_error: str | None = None
        self.failures_stopped = False

    def wrap(self, objective: Any) -> Any:
        def trial_run(trial: Any) -> float:
            if self.signals.received is not None:  # came while Optuna created this trial
                self.interrupted_trial = trial.number
                raise self.signals.exception()
            self.signals.hold = False
            try:
                return objective(trial)
            except KeyboardInterrupt:
                self.interrupted_trial = trial.number
                raise
            finally:
                self.signals.hold = True

        return trial_run

    def trained(self, trial: Any) -> None:
        """Objective hook: training is over; a signal now waits until the trial is stored."""
        self.signals.hold = True

    def after_trial(self, study: Any, trial: Any) -> None:
        """Optuna callback, after each trial is stored."""
        from optuna.trial import TrialState

        if trial.state == TrialState.FAIL and trial.user_attrs.get("stop_reason") == "error":
            self.failures += 1
            self.last_error = f"trial {trial.number}: {trial.user_attrs.get('error')}"
        elif trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            self.failures = 0
        limit = self.cfg.study.max_consecutive_failures
        if limit and self.failures >= limit:
            self.failures_stopped = True
            study.stop()
        if self.signals.received is not None:
            study.stop()

    @property
    def stopped(self) -> bool:
        return self.failures_stopped or self.signals.received is not None

    def interrupted(self, study: Any, storage: Any) -> int:
        """After a signal: re-queue the trial it ended, say what happened, return the exit code."""
        from optuna.trial import TrialState

        from hpo.storage import requeue_trial

        what = "terminated" if self.signals.code == EXIT_TERMINATED else "interrupted"
        done = "no trial was running"
        if self.interrupted_trial is not None:
            trial = next(t for t in study.get_trials(deepcopy=False) if t.number == self.interrupted_trial)
            if trial.state == TrialState.FAIL:
                queued = requeue_trial(study, storage, trial, self.cfg.study.max_retries)
                again = (
                    "re-queued" if queued else f"not re-queued (retried study.max_retries = {self.cfg.study.max_retries} times)"
                )
                done = f"the running trial {trial.number} is stored as FAIL and {again}"
        print(f"hpo: {what}: {done}; run the same command to continue the study", file=sys.stderr, flush=True)
        return self.signals.code


class _DropTrialFailedTraceback(logging.Filter):
    """Optuna logs a failed trial with its traceback; the error's first line (in the log line
    and the trial's ``error`` attribute) or hpo's line about a signal says what happened,
    ``--debug`` shows the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        from hpo.errors import TrialFailed

        if record.exc_info and isinstance(record.exc_info[1], (TrialFailed, KeyboardInterrupt)):
            record.exc_info, record.exc_text = None, None
        return True


def _no_traceback_for_failed_trials() -> None:
    import optuna

    optuna.logging.get_logger("optuna")  # make sure Optuna's handler exists
    for handler in logging.getLogger("optuna").handlers:
        handler.addFilter(_DropTrialFailedTraceback())


def _one_line_artifact_warnings(folder: str) -> None:
    """An artifact that cannot be written is one ``hpo: warning:`` line per artifact, and a
    folder that cannot be written at all is said once at the start; trials run either way."""
    import warnings

    from hpo.artifacts import ArtifactWarning, writable

    previous = warnings.showwarning

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if issubclass(category, ArtifactWarning):
            print(f"hpo: warning: {message}", file=sys.stderr, flush=True)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", ArtifactWarning)
    reason = writable(folder)
    if reason is not None:
        print(
            f"hpo: warning: artifact folder {folder!r} cannot be written ({reason}): trials run, their artifacts are lost",
            file=sys.stderr,
            flush=True,
        )


def _optimize(study: Any, objective: Any, *, n_trials: int | None, timeout: float | None, **kwargs: Any) -> None:
    """``study.optimize(objective, n_trials, timeout, **kwargs)`` that survives losing a trial.

    A worker that misses its heartbeats for longer than ``study.grace_period`` (a paused process,
    a machine so overloaded that the heartbeat thread does not run) finds its trial failed by
    another worker's stale check, which has re-queued it.  Optuna then raises out of ``optimize``
    ("Cannot tell a FAIL trial"); here the worker says so in one line and goes on with the rest of
    its trials (the lost one counts as one of them, like any failed trial).
    """
    import optuna

    started = time.monotonic()
    ran: list[Any] = []

    def watched(trial: Any) -> float:
        ran.append(trial)
        try:
            return objective(trial)
        except optuna.exceptions.UpdateFinishedTrialError:  # logged by Optuna: keep it short
            raise TrialLost(f"trial {trial.number} was marked FAIL by another worker") from None

    while True:
        left = None if n_trials is None else n_trials - len(ran)
        left_time = None if timeout is None else timeout - (time.monotonic() - started)
        if (left is not None and left <= 0) or (left_time is not None and left_time <= 0):
            return
        try:
            study.optimize(watched, n_trials=left, timeout=left_time, **kwargs)
            return
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as e:
            if not ran or not _failed_by_another_worker(study, ran[-1], e):
                raise
            lost = study._storage.get_trial(ran[-1]._trial_id)
            for callback in kwargs.get("callbacks") or ():  # it ended, as FAIL: count it like any trial
                callback(study, lost)
            stop = study._stop_flag  # a callback's study.stop(); the next optimize() would clear it
            storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache
            grace = getattr(storage, "grace_period", None) or 2 * (getattr(storage, "heartbeat_interval", None) or 0)
            print(
                f"hpo: trial {ran[-1].number} was marked FAIL by another worker: this process sent no heartbeat "
                f"for study.grace_period = {grace} s (paused, or the machine overloaded?); the stale check re-queues "
                "the trial (up to study.max_retries times) and this worker goes on",
                file=sys.stderr,
                flush=True,
            )
            if stop:
                return


class TrialLost(Exception):
    """This worker's running trial was failed by another worker's stale check."""


def _failed_by_another_worker(study: Any, trial: Any, error: BaseException) -> bool:
    """True if ``error`` is Optuna refusing to finish ``trial`` because it is FAIL already.

    This process never stores FAIL before telling: the stored FAIL came from a stale check."""
    import optuna
    from optuna.trial import TrialState

    refused = isinstance(error, optuna.exceptions.UpdateFinishedTrialError) or str(error).startswith("Cannot tell a ")
    return refused and study._storage.get_trial(trial._trial_id).state == TrialState.FAIL


WORKER_ATTR = "worker"  # user attr: HOST:PID of the process that ran the trial


def _tag_worker(objective: Any) -> Any:
    """Record which process ran each trial (user attr ``worker``), so shared studies can tell."""
    import socket

    tag = f"{socket.gethostname()}:{os.getpid()}"

    def tagged(trial: Any) -> float:
        trial.set_user_attr(WORKER_ATTR, tag)
        return objective(trial)

    return tagged


def _trials_of(study: Any, pids: set[int]) -> int:
    """How many trials of ``study`` processes ``pids`` of this host ran."""
    import socket

    tags = {f"{socket.gethostname()}:{pid}" for pid in pids}
    return sum(t.user_attrs.get(WORKER_ATTR) in tags for t in study.get_trials(deepcopy=False))


def _make_storage(url: str, cfg: Any) -> Any:
    from hpo.storage import make_storage

    s = cfg.study
    return make_storage(url, heartbeat_interval=s.heartbeat_interval, grace_period=s.grace_period, max_retry=s.max_retries)


def _one_line_thread_errors(url: str) -> None:
    """A database error in Optuna's heartbeat thread: one line (password hidden), no traceback."""
    import threading

    from hpo.storage import _scrub, mask_url

    previous = threading.excepthook

    def hook(args: Any) -> None:
        cause = _database_error_in(args.exc_value) if args.exc_value is not None else None
        if cause is None:
            previous(args)
            return
        text = _scrub(str(getattr(cause, "orig", cause)), url)
        print(f"hpo: heartbeat to {mask_url(url)} failed: {text}", file=sys.stderr, flush=True)

    threading.excepthook = hook


def _database_error_in(e: BaseException) -> BaseException | None:
    """The database error behind ``e`` (Optuna may raise another error while handling one)."""
    import sqlalchemy.exc

    seen: set[int] = set()
    found = None
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, sqlalchemy.exc.SQLAlchemyError):
            return e
        if found is None and type(e).__name__ == "StorageInternalError":
            found = e
        e = e.__cause__ or e.__context__
    return found


# --------------------------------------------------------------------------------------------
# study.max_trials: a cap on the whole study, whichever worker runs the trials


def _cap_count(study: Any, before_number: int | None = None) -> tuple[int, int]:
    """(trials that count towards the cap, trials waiting to be retried).

    Counted: finished (COMPLETE, PRUNED), RUNNING and WAITING trials; FAIL trials do not count
    (their retries do).  With ``before_number``, only trials numbered below it.
    """
    from optuna.trial import TrialState

    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    trials = study.get_trials(deepcopy=False, states=counted)
    if before_number is not None:
        trials = [t for t in trials if t.number < before_number]
    return len(trials), sum(t.state == TrialState.WAITING for t in trials)


def _optimize_capped(
    study: Any, objective: Any, max_trials: int, budget: _Budget, timeout: float | None, run: _StudyRun, callbacks: list
) -> bool:
    """Run trials one by one until this worker's budget is done or the study holds ``max_trials``
    (then return True).

    Before each trial: trials of dead workers are failed (and re-queued) and the cap is checked.
    Two workers can pass that check at the same instant; the trial numbers then decide: a new
    trial with ``max_trials`` counted trials below its number is surplus, stored as FAIL with
    ``stop_reason = "max_trials"`` without training, and its worker stops.
    """
    import warnings

    import optuna

    from hpo.errors import TrialFailed

    surplus: list[int] = []

    def capped(trial: optuna.Trial) -> float:
        this = study.get_trials(deepcopy=False)[trial.number]
        retry = "failed_trial" in this.system_attrs  # set by RetryHeartbeatStaleTrialCallback
        if not retry and _cap_count(study, before_number=trial.number)[0] >= max_trials:
            surplus.append(trial.number)
            study.stop()
            trial.set_user_attr("stop_reason", "max_trials")
            raise TrialFailed(f"study.max_trials = {max_trials} reached by other workers; trial not run")
        return objective(trial)

    started = time.monotonic()
    while budget.more(study) and not budget.recycle_due:
        if timeout is not None and time.monotonic() - started >= timeout:
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        counted, waiting = _cap_count(study)
        if counted >= max_trials and not waiting:
            return True
        _optimize(study, capped, n_trials=1, timeout=None, catch=(TrialFailed,), callbacks=callbacks, gc_after_trial=False)
        if run.stopped:
            return False
        if surplus:
            return True
    return False


# --------------------------------------------------------------------------------------------
# --workers N: N processes on this machine


def _shares(total: int | None, workers: int) -> list[int | None]:
    """Split ``total`` trials between workers as evenly as possible (None: unlimited each)."""
    if total is None:
        return [None] * workers
    base, extra = divmod(total, workers)
    return [base + (i < extra) for i in range(workers) if base + (i < extra) > 0]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run_workers(args: argparse.Namespace, cfg: Any, url: str, n_trials: int | None) -> int:
    """Start one ``study`` process per worker, the storage URL in their environment (never on a
    command line), wait for all; exit 1 if any failed."""
    import subprocess
    import threading

    from hpo.data import check_data
    from hpo.storage import _password, mask_url
    from hpo.study import open_study

    if url.startswith("sqlite") and ":memory:" in url:
        raise HpoError("an in-memory SQLite storage cannot be shared by --workers: use a file, PostgreSQL or MySQL")
    check_data(cfg.data)  # each worker loads the data itself; a missing or corrupt file stops all before the study exists
    storage = _make_storage(url, cfg)  # reachable? creates the study once, before the workers race for it
    study = open_study(cfg, storage, args.study_name)
    name = study.study_name
    if hasattr(storage, "engine"):
        storage.engine.dispose()
    shares = _shares(n_trials, args.workers)
    if not shares:
        print(f"study {name!r} in {mask_url(url)}: 0 trials to run, no worker started", flush=True)
        return 0
    threads = args.threads or max(1, _cpu_count() // len(shares))
    env = dict(os.environ, HPO_STORAGE=url, OMP_NUM_THREADS=str(threads))
    env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
    common = [sys.executable, "-m", "hpo.run"] + (["--debug"] if args.debug else [])
    common += ["study", args.study_file, "--study-name", name, "--no-progress", "--threads", str(threads)]
    for item in args.overrides:
        common += ["--set", item]
    if args.no_artifacts:
        common += ["--no-artifacts"]
    elif args.artifact_dir:
        common += ["--artifact-dir", args.artifact_dir]
    if args.tensorboard:
        common += ["--tensorboard", args.tensorboard] + (["--tensorboard-batches"] if args.tensorboard_batches else [])
    if args.timeout is not None:
        common += ["--timeout", str(args.timeout)]
    print(
        f"study {name!r} in {mask_url(url)}: {len(shares)} worker processes x {threads} CPU threads, "
        f"trials per worker: {', '.join('unlimited' if s is None else str(s) for s in shares)}",
        flush=True,
    )
    started = time.perf_counter()
    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    lock = threading.Lock()

    password = _password(url)

    def pump(i: int, stream: Any) -> None:
        for line in stream:
            if password:
                line = line.replace(password, "***")
            with lock:
                sys.stdout.write(f"[worker {i}] {line}")
                sys.stdout.flush()

    try:
        for i, share in enumerate(shares):
            argv = common + ([] if share is None else ["--n-trials", str(share)])
            if cfg.study.seed is not None:  # one seed per worker, or they would all sample the same parameters
                argv += ["--seed", str(cfg.study.seed + i)]
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            procs.append(proc)
            pumps.append(threading.Thread(target=pump, args=(i, proc.stdout), daemon=True))
            pumps[-1].start()
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt as e:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    for t in pumps:
        t.join(timeout=5)
    failed = [(i, c) for i, c in enumerate(codes) if c != 0]
    for i, c in failed:
        print(f"hpo: worker {i} exited with code {c}", file=sys.stderr)
    study = open_study(cfg, _make_storage(url, cfg), name)
    own = _trials_of(study, {p.pid for p in procs})
    print(summary(study, cfg, len(study.get_trials(deepcopy=False)) - own, time.perf_counter() - started))
    return 1 if failed else 0


def summary(study: Any, cfg: Any, before: int, seconds: float) -> str:
    """A few lines: counts by outcome, the best trial and its parameters."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.is_finished()]
    reached = [t for t in finished if t.user_attrs.get("reached_target")]
    count = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    obj = cfg.objective
    lines = [
        f"{len(trials) - before} trials in {seconds:.1f} s; study {study.study_name!r} holds {len(trials)}: "
        f"{len(reached)} reached {obj.monitor} >= {obj.target}, {count[TrialState.COMPLETE]} complete, "
        f"{count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed"
    ]
    try:
        best = study.best_trial
    except ValueError:
        lines.append("no completed trial yet")
        return "\n".join(lines)
    ua = best.user_attrs
    if ua.get("reached_target"):
        head = f"best: trial {best.number}, {ua['epochs_to_target']} epochs to {obj.monitor} >= {obj.target}"
    else:
        head = f"best: trial {best.number}, target not reached (best {obj.monitor} {ua.get('best_' + obj.monitor)}, value {best.value:.4f})"
    spe = ua.get("seconds_per_epoch")
    lines.append(f"{head}; {ua.get('n_params')} parameters, {spe} s/epoch" if spe is not None else head)
    if not cfg.study.confirming:
        lines.append("  " + " ".join(f"{k}={_fmt(v)}" for k, v in {**best.params, **ua.get("fixed_params", {})}.items()))
        return "\n".join(lines)
    from hpo.answer import answer_line, compute_answer, confirmation_cost

    answer = compute_answer(trials, cfg.study.confirm_seeds)
    lines.append(f"answer: {answer_line(answer, cfg.study.confirm_seeds)}")
    if answer is not None:
        lines.append("  " + " ".join(f"{k}={_fmt(v)}" for k, v in answer["params"].items()))
        if answer["trial"] != best.number:
            lines.append(
                f"  (Optuna's best_trial {best.number} is a single run; the answer is the fastest median over "
                f"{cfg.study.confirm_seeds} seeds)"
            )
    cost = confirmation_cost(trials)
    if cost["repeats"]:
        lines.append(
            f"confirmation: {cost['repeats']} repeats ({cost['dropped']} dropped), {cost['repeat_epochs']:g} "
            f"of {cost['epochs']:g} training epochs; {cost['capped']} trials capped"
        )
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def cmd_list(args: argparse.Namespace) -> int:
    import optuna

    from hpo.storage import make_storage, mask_url, resolve_url

    url = _existing_sqlite(resolve_url(args.storage))
    storage = make_storage(url)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=True)
    if not summaries:
        print(f"no studies in {mask_url(url)}")
        return 0
    from hpo.answer import ANSWER_ATTR, format_runs
    from hpo.study import STUDY_ATTR

    width = max(len(s.study_name) for s in summaries)
    print(f"{'study':<{width}}  trials  best value  best epochs_to_target  answer")
    for s in summaries:
        best = s.best_trial
        value = f"{best.value:.4f}" if best is not None else "-"
        ett = best.user_attrs.get("epochs_to_target") if best is not None else None
        answer = s.user_attrs.get(ANSWER_ATTR)
        confirming = (s.user_attrs.get(STUDY_ATTR) or {}).get("config", {}).get("study", {}).get("confirm_seeds", 3) > 1
        shown = format_runs(answer) if answer else ("none confirmed yet" if confirming and STUDY_ATTR in s.user_attrs else "-")
        print(f"{s.study_name:<{width}}  {s.n_trials:>6}  {value:>10}  {str(ett) if ett is not None else '-':>21}  {shown}")
    return 0


def cmd_proxy(args: argparse.Namespace) -> int:
    import optuna

    from hpo.storage import make_storage, mask_url, resolve_url

    url = resolve_url(args.storage)
    if url.startswith("grpc://"):
        raise HpoError("proxy --storage needs a database URL (postgresql+psycopg2://, mysql+pymysql://, sqlite:///), not grpc://")
    # With Optuna's in-process cache, as its docs advise; no heartbeat: its workers cannot beat,
    # and a heartbeat given to the trials it creates would let other workers fail them.
    storage = optuna.storages.get_storage(make_storage(url, heartbeat_interval=None))
    try:
        # What optuna.storages.run_grpc_proxy_server does, split so that a busy port is reported
        # before "serving" is printed.
        from optuna.storages._grpc.server import make_server
    except ImportError as e:
        raise HpoError(f"no gRPC support ({e.name or e}): pip install 'hpo[grpc]'") from None
    try:
        server = make_server(storage, args.host, args.port)
    except RuntimeError:  # grpc cannot bind
        raise HpoError(f"cannot listen on {args.host}:{args.port}: address in use or not available") from None
    server.start()
    print(f"serving {mask_url(url)} on grpc://{args.host}:{args.port}; workers: --storage grpc://HOST:{args.port}", flush=True)
    try:
        server.wait_for_termination()
    finally:
        server.stop(grace=2)
    return 0


def _existing_sqlite(url: str) -> str:
    """Reading commands must not create an empty SQLite file where a typo pointed."""
    from pathlib import Path

    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///") :])
        if not path.is_file():
            raise HpoError(f"no SQLite file {str(path)!r} (storage {url}): run a study first or check --storage")
    return url


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hpo.quiet import import_tensorflow
    from hpo.storage import make_storage, resolve_url

    out = Path(args.out or Path("reports") / args.study_name)
    _check_folder(out, "--out")
    storage = make_storage(_existing_sqlite(resolve_url(args.storage)))
    from hpo.report import write_report
    from hpo.study import load_study, study_info

    study = load_study(args.study_name, storage)
    study_info(study)  # not an hpo study: one line, before anything is written
    artifact_store = None
    folder = Path(args.artifact_dir or "studies/artifacts")
    if folder.is_dir():
        from optuna.artifacts import FileSystemArtifactStore

        artifact_store = FileSystemArtifactStore(str(folder))
    if artifact_store is not None:  # the best model's test accuracy needs Keras
        import_tensorflow()
    done = write_report(study, out, artifact_store=artifact_store, top=args.top)
    acc, how = done["test"] if done["test"] is not None else (None, "no completed trial")
    test = f"test accuracy {acc:.4f}" if acc is not None else f"test accuracy not available: {how}"
    print(f"{out}: trials.csv ({done['rows']} rows), summary.md, {len(done['figures'])} figures; {test}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import socket

    from hpo.artifacts import make_artifact_store
    from hpo.storage import make_storage, mask_url, resolve_url

    url = _existing_sqlite(resolve_url(args.storage))
    try:  # a taken port or an unknown host is bad input: say so in one line before serving
        socket.getaddrinfo(args.host, args.port)
        with socket.create_server((args.host, args.port)):
            pass
    except socket.gaierror as e:
        raise HpoError(f"cannot listen on {args.host}:{args.port}: unknown host ({e.strerror})") from None
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise HpoError(f"cannot listen on {args.host}:{args.port}: {reason}") from None
    storage = make_storage(url)
    store = make_artifact_store(args.artifact_dir)
    from optuna_dashboard import run_server

    print(f"optuna-dashboard on http://{args.host}:{args.port}/ for {mask_url(url)} (Ctrl-C stops)", flush=True)
    run_server(storage, host=args.host, port=args.port, artifact_store=store)
    return 0


def _stored_config(study: Any, study_file: str | None) -> Any:
    """The study file a study was made from: ``--study-file``, else the tables stored on it."""
    from hpo.api import load_config
    from hpo.search import check_config
    from hpo.study import stored_config

    return load_config(study_file) if study_file else check_config(stored_config(study))


def cmd_confirm(args: argparse.Namespace) -> int:
    import dataclasses

    from hpo.answer import answer_line, compute_answer, configurations, format_runs
    from hpo.storage import make_storage, resolve_url
    from hpo.study import load_study

    url = _existing_sqlite(resolve_url(args.storage))
    study = load_study(args.study_name, make_storage(url))
    cfg = _stored_config(study, args.study_file)
    seeds = max(cfg.study.confirm_seeds, args.seeds + 1)  # runs each configuration has afterwards
    cfg = dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, confirm_seeds=seeds, recycle_after=0))
    chosen = _fastest_configurations(study, args.top)
    if not chosen:
        raise HpoError(f"study {args.study_name!r} has no trial that reached the target: nothing to confirm")

    def enqueue(opened: Any) -> None:
        for trial in chosen:
            for _ in range(args.seeds):
                opened.enqueue_trial(dict(trial.params), user_attrs={"repeat_of": trial.number, "race": False})
        print(
            f"confirming trials {', '.join(str(t.number) for t in chosen)} of {args.study_name!r}: "
            f"{args.seeds} more runs each ({len(chosen) * args.seeds} trials)",
            flush=True,
        )

    run_args = argparse.Namespace(
        **vars(args), n_trials=0, timeout=None, tensorboard=None, tensorboard_batches=False, workers=1, seed=None
    )
    code = _run_study(run_args, cfg, on_open=enqueue)
    if code != 0:
        return code
    trials = load_study(args.study_name, make_storage(url)).get_trials(deepcopy=False)
    found = configurations(trials)
    print(f"{'trial':>5}  {'runs':>4}  {'median':>8}  {'range':>11}  {'parameters':>10}  epochs")
    for trial in chosen:
        c = found.get(trial.number)
        if c is None:
            continue
        span = f"{c['min']:g}-{c['max']:g}" if c["max"] is not None else (f"{c['min']:g}-" if c["min"] is not None else "-")
        median = f"{c['median']:g}" if c.reached else "-"
        print(f"{trial.number:>5}  {c['runs']:>4}  {median:>8}  {span:>11}  {c['n_params'] or '-':>10}  {format_runs(c)}")
    print(f"answer: {answer_line(compute_answer(trials, seeds), seeds)}")
    return 0


def _fastest_configurations(study: Any, k: int) -> list[Any]:
    """The ``k`` original trials with the fewest epochs to the target, one per parameter set."""
    from optuna.trial import TrialState

    reached = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("epochs_to_target") is not None and t.user_attrs.get("repeat_of") is None
    ]
    reached.sort(key=lambda t: (t.user_attrs["epochs_to_target"], t.user_attrs.get("n_params") or 0, t.number))
    chosen, seen = [], set()
    for t in reached:
        key = tuple(sorted(t.params.items()))
        if key not in seen:
            seen.add(key)
            chosen.append(t)
    return chosen[:k]


COMMANDS = {
    "confirm": cmd_confirm,
    "study": cmd_study,
    "list": cmd_list,
    "report": cmd_report,
    "dashboard": cmd_dashboard,
    "proxy": cmd_proxy,
}


def _print_traceback(error: BaseException, args: argparse.Namespace) -> None:
    """``--debug``: the traceback of a bad-input error, with the error behind it (a driver's, a
    parser's) that the one-line message leaves out, and the storage password hidden."""
    import traceback

    from hpo.storage import _password

    error.__suppress_context__ = False
    text = "".join(traceback.format_exception(error))
    password = _password(getattr(args, "storage", None) or os.environ.get("HPO_STORAGE") or "")
    sys.stderr.write(text.replace(password, "***") if password else text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a worker that recycles itself
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # Explicit handlers: a process started in the background by a shell inherits SIGINT as
    # ignored, and a cluster's SIGTERM must end the trial as cleanly as Ctrl-C does.
    global _signals
    _signals = Signals()
    previous = {signum: signal.signal(signum, _signals.handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return COMMANDS[args.command](args)
    except HpoError as e:
        if args.debug:
            _print_traceback(e, args)
        print(f"hpo: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
    finally:
        _signals.hold = True  # a late signal must not cut the restoring short
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def cli() -> None:
    code = main()
    from hpo.storage import close_sqlite

    close_sqlite()
    # Everything is stored by now.  Skip the interpreter's teardown, which with TensorFlow
    # loaded takes seconds (its thread pools and graphs), so that signals end workers promptly.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    cli()
