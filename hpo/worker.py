"""One worker's study loop: the trials a process runs, and what can happen to them.

:func:`run_worker` opens (or creates) the study, builds the objective and its callbacks
(artifacts, TensorBoard, confirmation, the budget) and runs trials until this process's share
is done, its recycling point comes (the caller continues in a fresh process, see
:mod:`hpo.launch`), ``study.max_trials`` is reached, too many trials fail in a row, or a
signal arrives.  It never replaces or exits the process itself.

Signals (:class:`Signals`): SIGINT and SIGTERM end the running trial as FAIL and re-queue it.
Lost trials: a worker whose trial another worker's stale check failed goes on (:func:`optimize`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from hpo import slurm
from hpo.account import ACCOUNT_FILE_ENV, Account, Progress, summary, write_account
from hpo.errors import EXIT_FAILED, EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, HpoError

__all__ = [
    "Signals",
    "Terminated",
    "WorkerResult",
    "WorkerSpec",
    "check_builder",
    "check_spec",
    "handling_signals",
    "run_worker",
]


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What one worker runs; each field is a flag of ``study`` (see :func:`hpo.launch.worker_argv`).

    ``n_trials`` and ``timeout`` None: the study file's.  ``artifact_dir`` None: the folder the
    study records, else the default beside the SQLite file (:func:`hpo.study.artifact_folder`).
    """

    study_file: str | None = None
    overrides: tuple[str, ...] = ()
    study_name: str | None = None
    n_trials: int | None = None
    timeout: float | None = None
    seed: int | None = None
    artifacts: bool = True
    artifact_dir: str | None = None
    tensorboard: str | None = None
    tensorboard_batches: bool = False
    threads: int | None = None
    progress: bool = True
    verbose: bool = False
    debug: bool = False


@dataclasses.dataclass(frozen=True)
class WorkerResult:
    """How :func:`run_worker` ended: ``code`` (an exit code), and whether the caller should go on
    in a fresh process (``recycle``) with ``n_trials`` trials and ``timeout`` seconds left."""

    code: int
    recycle: bool = False
    n_trials: int | None = None
    timeout: float | None = None
    study_name: str | None = None
    ran: int = 0  # trials this process ran


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
        self._raised: KeyboardInterrupt | None = None  # the handler's exception, if it may be lost
        self._redeliver = False
        self._in_hook = False

    @property
    def code(self) -> int:
        return EXIT_TERMINATED if self.received == signal.SIGTERM else EXIT_INTERRUPTED

    def exception(self) -> KeyboardInterrupt:
        return Terminated() if self.received == signal.SIGTERM else KeyboardInterrupt()

    def handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            if self._redeliver and not self._in_hook:  # see lost()
                self._redeliver = False
                self._raise()
            return
        self.received = signum
        if not self.hold:
            self.hold = True
            self._raise()

    def _raise(self) -> None:
        self._raised = self.exception()
        raise self._raised

    def lost(self, unraisable: Any) -> bool:
        """For :data:`sys.unraisablehook`: whether ``unraisable`` is the handler's exception, raised
        while a finalizer (``__del__``, a weakref callback) ran, where Python prints it and drops
        it -- and the process would go on as if no signal had come.  Then it is raised again in
        the main thread, as the signal itself is delivered again (from a helper thread: here it
        would be raised into this hook and lost once more), until it is raised."""
        if self._raised is None or unraisable.exc_value is not self._raised:
            return False
        self._in_hook, self._redeliver = True, True
        try:
            threading.Thread(target=self._deliver_again, daemon=True).start()
        finally:
            self._in_hook = False
        return True

    def _deliver_again(self) -> None:
        main = threading.main_thread().ident
        while self._redeliver and self.received is not None and main is not None:
            signal.pthread_kill(main, self.received)  # a real signal: it also ends a blocking call
            time.sleep(0.05)

    def until_signal(self, step: Callable[[], Any]) -> NoReturn:
        """A server's life: signals held (only remembered) from here on, and ``step()`` (a
        moment's serving) called until one has come, whose exception is raised then.  Nothing
        is raised at a random point of a server's start-up or its request handling."""
        self.hold = True
        while self.received is None:
            step()
        raise self.exception()

    def checkpoint(self) -> None:
        """Between the steps of a worker's start-up: end it, in one line, for a signal that came
        while held (before any trial exists)."""
        if self.received is not None:
            what = "terminated" if self.code == EXIT_TERMINATED else "interrupted"
            print(f"hpo: {what} before the first trial started; no trial was run", file=sys.stderr, flush=True)
            raise self.exception()


@contextlib.contextmanager
def handling_signals() -> Iterator[Signals]:
    """SIGINT and SIGTERM handled by a new :class:`Signals` while the block runs (in the main
    thread; elsewhere Python cannot set handlers and the signals keep their handlers).

    Explicit handlers: a process started in the background by a shell inherits SIGINT as
    ignored, and a cluster's SIGTERM must end the trial as cleanly as Ctrl-C does."""
    signals = Signals()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return
    previous = {signum: signal.signal(signum, signals.handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    unraisable = sys.unraisablehook
    sys.unraisablehook = lambda u: signals.lost(u) or unraisable(u)
    try:
        yield signals
    finally:
        signals.hold = True  # a late signal must not cut the restoring short
        signals._redeliver = False
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = unraisable


def check_spec(spec: WorkerSpec) -> None:
    """Flags that are bad input, found before anything is stored or created (by
    :func:`run_worker` and :func:`hpo.launch.run_workers`, first thing)."""
    from hpo.config import check_run
    from hpo.folders import check_folder

    check_run(n_trials=spec.n_trials, timeout=spec.timeout, seed=spec.seed, threads=spec.threads)
    if spec.tensorboard_batches and not spec.tensorboard:
        raise HpoError("--tensorboard-batches needs --tensorboard DIR")
    if spec.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise HpoError("--tensorboard needs the tensorboard package: pip install 'hpo[tensorboard]'")
        check_folder(spec.tensorboard, "--tensorboard")
    if spec.artifacts and spec.artifact_dir:
        check_folder(spec.artifact_dir, "--artifact-dir", writable=False)


def check_builder(cfg: Any, input_shape: tuple[int, ...], n_classes: int, *, threads: int | None = None) -> None:
    """The custom family's ``model.builder`` imports and builds a model that fits the data (see
    :func:`hpo.models.custom.check_builder`), before anything is stored; other families: nothing.
    ``threads``: TensorFlow's CPU threads (``--threads``), set before the test build starts
    TensorFlow, after which they cannot change."""
    from hpo.config import CUSTOM_FAMILY

    if CUSTOM_FAMILY not in cfg.model.family:
        return
    from hpo.quiet import import_tensorflow

    import_tensorflow()  # quietly, before the user's module or hpo.models imports it
    if threads is not None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from hpo.models.custom import check_builder as check

    check(cfg, input_shape, n_classes)


def _threads_text(threads: int | None) -> str:
    if threads is None:
        return ""  # TensorFlow's default: every core it sees
    return f" x {threads} CPU thread{'s' if threads > 1 else ''}"


def make_study_storage(url: str, cfg: Any) -> Any:
    """The storage with the study file's heartbeat and retry settings."""
    from hpo.storage import make_storage

    s = cfg.study
    return make_storage(url, heartbeat_interval=s.heartbeat_interval, grace_period=s.grace_period, max_retry=s.max_retries)


@contextlib.contextmanager
def _optuna_quiet(quiet: bool) -> Iterator[None]:
    """Optuna's INFO lines off for the block (with ``quiet``), its verbosity restored after."""
    import optuna

    before = optuna.logging.get_verbosity()
    if quiet:
        optuna.logging.set_verbosity(max(before, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def run_worker(
    cfg: Any,
    url: str,
    spec: WorkerSpec,
    signals: Signals,
    *,
    account: Account | None = None,
    on_open: Callable[[Any], None] | None = None,
) -> WorkerResult:
    """Run this process's trials of the study (see the module's docstring); ``on_open(study)``
    runs once the study is open, before the first trial.  ``account`` is the command's account
    so far (a recycled worker's), updated in place."""
    from hpo.data import check_input, data_name, prepare
    from hpo.folders import check_folder
    from hpo.quiet import import_tensorflow
    from hpo.storage import mask_url
    from hpo.study import artifact_folder, check_artifact_folder, open_study

    n_trials = spec.n_trials if spec.n_trials is not None else cfg.study.n_trials
    timeout = spec.timeout if spec.timeout is not None else cfg.study.timeout
    account = account if account is not None else Account(asked=n_trials)
    if spec.threads is None and slurm.allocated_cpus() is not None:
        spec = dataclasses.replace(spec, threads=slurm.allocated_cpus())  # the task's CPUs, not the node's
    # Start-up (data, study, TensorFlow) holds signals and checks for them between its steps: an
    # exception raised by the handler anywhere could land in a finalizer, where Python prints
    # "Exception ignored" and drops it.
    signals.hold = True
    check_spec(spec)
    split = prepare(cfg.data)  # data errors surface before anything is stored
    check_input(cfg, split.image_shape)
    check_builder(cfg, split.image_shape, split.n_classes, threads=spec.threads)
    signals.checkpoint()
    storage = make_study_storage(url, cfg)
    with _optuna_quiet(not spec.verbose):  # its "A new study created" line: the banner says which study
        study = open_study(cfg, storage, spec.study_name, artifact_dir=artifact_folder(url, spec.artifact_dir))
    if split.classes is not None and "classes" not in study.user_attrs:
        study.set_user_attr("classes", list(split.classes))  # class i of the model is the user's label classes[i]
    signals.checkpoint()
    if on_open is not None:
        on_open(study)
    folder = artifact_folder(url, spec.artifact_dir, study=study) if spec.artifacts else None
    artifact_store = None
    if folder is not None:
        problem = None if spec.artifact_dir else check_artifact_folder(study, folder)
        if problem is not None:
            raise HpoError(problem)
        check_folder(folder, "--artifact-dir", writable=False)
        from hpo.artifacts import make_artifact_store

        artifact_store = make_artifact_store(folder)
        _one_line_artifact_warnings(str(folder))

    import_tensorflow()
    signals.checkpoint()
    if spec.threads is not None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(spec.threads)
        tf.config.threading.set_inter_op_parallelism_threads(spec.threads)
    from hpo.errors import TrialFailed
    from hpo.objective import Objective

    callbacks, keras_callbacks = [], []
    if artifact_store is not None:
        from hpo.artifacts import ArtifactWriter

        callbacks.append(ArtifactWriter(artifact_store, cfg))
    if spec.tensorboard:
        from hpo.artifacts import tensorboard_factory

        keras_callbacks.append(tensorboard_factory(spec.tensorboard, study.study_name, batches=spec.tensorboard_batches))
    run = _StudyRun(cfg, signals)
    objective = run.wrap(
        _tag_worker(
            Objective(cfg, split, callbacks=tuple(callbacks), keras_callbacks=tuple(keras_callbacks), on_trained=run.trained)
        )
    )
    if not account.banner:
        asked = account.asked if account.asked is not None else "unlimited"
        print(
            f"study {study.study_name!r} in {mask_url(url)}: {data_name(cfg.data)} ({len(split.x_train)} train / "
            f"{len(split.x_val)} validation), {cfg.objective.monitor} >= {cfg.objective.target} "
            f"within {cfg.objective.max_epochs} epochs; running {asked} trials{_threads_text(spec.threads)}",
            flush=True,
        )
        if slurm.describe() is not None:
            print(f"{slurm.describe()}: trials record it in user attribute {SLURM_ATTR!r}", flush=True)
        for note in split.notes:
            print(f"hpo: note: {note}", flush=True)
        account.banner = True
    _one_line_thread_errors(url)
    held = len(study.get_trials(deepcopy=False))
    if held and cfg.study.seed is not None:
        # The study holds trials already (a re-run, or this worker's previous process): seed the
        # sampler past them, or it would repeat the random draws of the run that made them.
        from hpo.search import make_sampler

        study.sampler = make_sampler(cfg, held=held)  # far from other workers' seed + i, for any study size
    recycle = cfg.study.recycle_after
    budget = _Budget(n_trials, recycle or None, cfg.study.confirming)
    if not spec.debug:  # before the progress bar, whose log handler takes the filters along
        _no_traceback_for_failed_trials()
    progress = Progress(
        account,
        enabled=spec.progress and (n_trials is not None or timeout is not None or cfg.study.confirming),
        cfg=cfg,
        quiet_optuna=not spec.verbose,
    )
    trial_callbacks = [run.after_trial]
    if cfg.study.confirming:
        from hpo.answer import Confirmation

        trial_callbacks.append(Confirmation(cfg.study.confirm_seeds, on_answer=_note_saver(cfg)))
    trial_callbacks += [budget.after_trial, progress.after_trial]
    capped = False
    started = time.perf_counter()
    signals.checkpoint()  # from here on a signal ends a trial only while it trains (Signals)
    try:
        if cfg.study.max_trials is None:
            if budget.more(study):
                optimize(
                    study,
                    objective,
                    n_trials=None,  # the budget stops the study: repeats do not count as trials
                    timeout=timeout,
                    catch=(TrialFailed,),
                    callbacks=trial_callbacks,
                    gc_after_trial=False,  # the objective clears Keras' session and collects itself
                )
        elif _optimize_capped(study, objective, cfg.study.max_trials, budget, timeout, run, trial_callbacks):
            capped = True
            progress.write(f"study.max_trials = {cfg.study.max_trials} reached: this worker stops")
    except (KeyboardInterrupt, _NotStarted):
        if signals.received is None:
            progress.close()
            raise
        # Optuna stored the running trial as FAIL, and run.interrupted() re-queues it; or the
        # signal came while Optuna created the trial, which is WAITING again.
    except Exception as e:
        progress.close()
        cause = database_error_in(e)
        if cause is None:
            raise
        from hpo.storage import _scrub

        print(
            f"hpo: storage {mask_url(url)} failed mid-study: {_scrub(str(getattr(cause, 'orig', cause)), url)}", file=sys.stderr
        )
        return WorkerResult(EXIT_FAILED, study_name=study.study_name)
    finally:
        account.ran += budget.ran
        account.searched += budget.searched
    progress.close()
    name = study.study_name
    if signals.received is not None:
        code = run.interrupted(study, storage)
        write_account(account)
        return WorkerResult(code, study_name=name)
    seconds = time.perf_counter() - started
    more = budget.recycle_due and budget.more(study) and not capped and (timeout is None or seconds < timeout)
    if run.failures_stopped:
        more = False
    if not more:
        if os.environ.get(ACCOUNT_FILE_ENV):
            write_account(account)  # the launcher sums its workers' accounts and prints the summary
        else:
            print(summary(study, cfg, account))
    if run.failures_stopped:
        print(
            f"hpo: stopped: {run.failures} trials in a row failed (study.max_consecutive_failures = "
            f"{cfg.study.max_consecutive_failures}), the last one with {run.last_error}; fix the cause and run the same "
            "command to continue",
            file=sys.stderr,
        )
        return WorkerResult(EXIT_FAILURES, study_name=name)
    if more:
        left = None if n_trials is None else max(0, n_trials - budget.searched)
        return WorkerResult(EXIT_OK, True, left, None if timeout is None else timeout - seconds, study_name=name, ran=budget.ran)
    return WorkerResult(EXIT_OK, study_name=name)


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


def rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return None


class _StudyRun:
    """One worker's study loop: signals (see :class:`Signals`), consecutive failures, re-queueing."""

    def __init__(self, cfg: Any, signals: Signals):
        self.cfg = cfg
        self.signals = signals
        self.interrupted_trial: int | None = None  # number of the trial a signal ended
        self.waiting_trial: int | None = None  # number of the trial a signal came before
        self.failures = 0  # failed trials in a row
        self.last_error: str | None = None
        self.failures_stopped = False

    def wrap(self, objective: Any) -> Any:
        def trial_run(trial: Any) -> float:
            if self.signals.received is not None:  # came while Optuna created this trial: it has not started
                from optuna.trial import TrialState

                trial.storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
                self.waiting_trial = trial.number
                raise _NotStarted(trial.number)
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

        from hpo.names import printable

        if trial.state == TrialState.FAIL and trial.user_attrs.get("stop_reason") == "error":
            self.failures += 1
            self.last_error = f"trial {trial.number}: {printable(trial.user_attrs.get('error'))}"
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
        if self.waiting_trial is not None:
            done = f"trial {self.waiting_trial} had not started and waits for the next run"
        if self.interrupted_trial is not None:
            trial = next(t for t in study.get_trials(deepcopy=False) if t.number == self.interrupted_trial)
            if trial.state == TrialState.FAIL:
                queued = requeue_trial(study, storage, trial, self.cfg.study.max_retries)
                again = (
                    "re-queued" if queued else f"not re-queued (retried study.max_retries = {self.cfg.study.max_retries} times)"
                )
                done = f"the running trial {trial.number} is stored as FAIL and {again}"
        from hpo.slurm import job_name

        # In a Slurm job, whoever carries on is not the user: the task's requeue or the study's other tasks.
        carry_on = (
            "other workers of the study, or this task requeued (sbatch --requeue), carry it on"
            if job_name() is not None
            else "run the same command to continue the study"
        )
        print(f"hpo: {what}: {done}; {carry_on}", file=sys.stderr, flush=True)
        return self.signals.code


class _NotStarted(BaseException):
    """A signal came while Optuna created the trial: the trial is WAITING again, for the next run.

    A BaseException, so that Optuna neither catches it nor stores the trial as FAIL."""


class _DropTrialFailedTraceback(logging.Filter):
    """Optuna logs a failed trial with its traceback (a 40-line one for Ctrl-C, 60 lines for a
    full disk); the error's first line (in the log line and the trial's ``error`` attribute) or
    hpo's line about a signal or the storage says what happened, ``--debug`` shows the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
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
    from hpo.artifacts import ArtifactWarning, writable
    from hpo.errors import warnings_as_lines

    warnings_as_lines(ArtifactWarning)
    reason = writable(folder)
    if reason is not None:
        print(
            f"hpo: warning: artifact folder {folder!r} cannot be written ({reason}): trials run, their artifacts are lost",
            file=sys.stderr,
            flush=True,
        )


def optimize(study: Any, objective: Any, *, n_trials: int | None, timeout: float | None, **kwargs: Any) -> None:
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
SLURM_ATTR = "slurm_job"  # user attr: JOBID_TASKID of the Slurm array task that ran the trial


def _tag_worker(objective: Any) -> Any:
    """Record which process ran each trial (user attr ``worker``), and under Slurm which job or
    array task (``slurm_job``), so shared studies can tell."""
    import socket

    tag = f"{socket.gethostname()}:{os.getpid()}"
    job = slurm.job_name()

    def tagged(trial: Any) -> float:
        trial.set_user_attr(WORKER_ATTR, tag)
        if job is not None:
            trial.set_user_attr(SLURM_ATTR, job)
        return objective(trial)

    return tagged


def _one_line_thread_errors(url: str) -> None:
    """A database error in Optuna's heartbeat thread: one line (password hidden), no traceback."""
    import threading

    from hpo.storage import _scrub, mask_url

    previous = threading.excepthook

    def hook(args: Any) -> None:
        cause = database_error_in(args.exc_value) if args.exc_value is not None else None
        if cause is None:
            previous(args)
            return
        text = _scrub(str(getattr(cause, "orig", cause)), url)
        print(f"hpo: heartbeat to {mask_url(url)} failed: {text}", file=sys.stderr, flush=True)

    threading.excepthook = hook


def database_error_in(e: BaseException) -> BaseException | None:
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
        optimize(study, capped, n_trials=1, timeout=None, catch=(TrialFailed,), callbacks=callbacks, gc_after_trial=False)
        if run.stopped:
            return False
        if surplus:
            return True
    return False
