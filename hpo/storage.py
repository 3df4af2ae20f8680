"""Storage URL -> Optuna storage (heartbeat, retry); sampler and pruner; opening a study.

Only this module builds storages.  SQLite is the default and suits one machine with few
processes; PostgreSQL (``postgresql+psycopg2://``) and MySQL/MariaDB (``mysql+pymysql://``) are
for many workers sharing one study.  URLs are shown with the password hidden, always.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import os
import random
import re
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import check_distribution_compatibility

from hpo.config import StudyConfig
from hpo.errors import ConfigError, StorageError, StudyMismatchError

__all__ = [
    "DEFAULT_STORAGE",
    "HeartbeatRDBStorage",
    "STUDY_ATTR",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "hide_password_in_logs",
    "mask_url",
    "open_study",
    "requeue_trial",
    "resolve_url",
]

DEFAULT_STORAGE = "sqlite:///studies/hpo.db"
STUDY_ATTR = "hpo"  # study user attr holding the settings costs depend on
CONNECT_TIMEOUT = 10  # seconds before an unreachable database is reported
# Connections one worker process may hold: pool_size + max_overflow (see docs/cluster.md).
POOL_SIZE, MAX_OVERFLOW = 2, 2
INIT_ATTEMPTS = 6  # workers starting at the same instant race to create the tables: retry


def resolve_url(url: str | None) -> str:
    """``--storage`` wins, then ``HPO_STORAGE`` (an empty one counts as unset), then the default
    SQLite file."""
    return url or os.environ.get("HPO_STORAGE") or DEFAULT_STORAGE


# ``[SCHEME:][//]USER:PASSWORD@``, the password read as SQLAlchemy reads it (anything up to the
# next "@", slashes and colons included), also where the scheme is missing or misspelt.
_USERINFO = re.compile(r"(?P<head>(?:[\w+]+:/+|(?![\w+]+:/))[^:/]*:)(?P<password>[^@]*)@")


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (also for URLs SQLAlchemy cannot parse)."""
    m = _USERINFO.match(url)
    return f"{m['head']}***@{url[m.end() :]}" if m and m["password"] else url


def _password(url: str) -> str | None:
    m = _USERINFO.match(url)
    return m["password"] if m and m["password"] else None


def _scrub(text: str, url: str) -> str:
    pw = _password(url)
    first = text.strip().splitlines()[0] if text.strip() else text
    return first.replace(pw, "***") if pw else first


def _host(url: str) -> str:
    m = _USERINFO.match(url)
    rest = url[m.end() :] if m else re.sub(r"^[^/]*//(?:[^@/]*@)?", "", url)
    return re.match(r"[^/?]*", rest).group(0) or "localhost"


class _HidePassword(logging.Filter):
    def __init__(self, password: str):
        super().__init__()
        self.password = password

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.password in message:
            record.msg, record.args = message.replace(self.password, "***"), None
        return True


def hide_password_in_logs(url: str) -> None:
    """Replace the password of ``url`` by ``***`` in every line Optuna, SQLAlchemy or hpo logs."""
    pw = _password(url)
    if not pw:
        return
    import optuna.logging

    flt = _HidePassword(pw)
    loggers = [logging.getLogger(), logging.getLogger("optuna"), logging.getLogger("sqlalchemy")]
    optuna.logging.get_logger("optuna")  # make sure Optuna's own handler exists
    for logger in loggers:
        logger.addFilter(flt)
        for handler in logger.handlers:
            if not any(isinstance(f, _HidePassword) and f.password == pw for f in handler.filters):
                handler.addFilter(flt)


def _is_creation_race(error: Exception) -> bool:
    """True for the errors of two workers creating the same tables or version row at once."""
    import sqlalchemy.exc

    if isinstance(error, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)):
        return True
    text = str(getattr(error, "orig", error)).lower()
    return isinstance(error, sqlalchemy.exc.OperationalError) and ("already exists" in text or "deadlock" in text)


def _grpc_storage(url: str) -> optuna.storages.BaseStorage:
    m = re.fullmatch(r"grpc://([^:/]+):(\d+)/?", url)
    if not m:
        raise StorageError(f"malformed gRPC storage URL {url!r}: expected grpc://HOST:PORT")
    host, port = m.group(1), int(m.group(2))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
    except ImportError as e:
        raise StorageError(f"no gRPC support for {url} ({e.name or e}): pip install 'hpo[grpc]'") from None
    try:
        proxy.wait_server_ready(timeout=CONNECT_TIMEOUT)
    except Exception:  # grpc.FutureTimeoutError
        proxy.close()
        raise StorageError(
            f"cannot reach the storage proxy at {host}:{port} within {CONNECT_TIMEOUT} s: "
            f"start it with python -m hpo.run proxy --storage URL --port {port}"
        ) from None
    return proxy


def _sqlite_wal(storage: optuna.storages.RDBStorage) -> None:
    """Write-ahead log and ``synchronous=NORMAL`` on every connection to a SQLite study file.

    A trial makes ~25 small commits (reports, user attributes); in SQLite's default mode each
    one waits for the disk (fsync).  With the write-ahead log, commits append to ``FILE-wal``
    and only checkpoints sync: readers (the dashboard, other workers) no longer block the
    writer, a crashed process loses nothing, and a power cut can lose only the last commits,
    never corrupt the file (https://www.sqlite.org/wal.html).  The write-ahead log needs all
    processes on one machine, which SQLite studies need anyway.
    """
    import sqlalchemy

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if storage.url.rsplit("/", 1)[-1] != ":memory:":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections made while the tables were created do not have it
    _SQLITE_ENGINES.add(storage.engine)


_SQLITE_ENGINES: weakref.WeakSet[Any] = weakref.WeakSet()


def close_sqlite() -> None:
    """Close every SQLite connection of this process.

    The last connection to close checkpoints the write-ahead log into the study file and
    removes ``FILE-wal`` and ``FILE-shm``; a process that ends without closing them leaves the
    two files beside the study (harmless: the next connection replays them).
    """
    for engine in list(_SQLITE_ENGINES):
        try:
            engine.dispose()
        except Exception:  # noqa: BLE001 - closing is best effort at exit
            pass


class HeartbeatRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage in which a trial has a heartbeat from the instant it is RUNNING.

    Optuna records a trial's first heartbeat from a thread that ``study.optimize`` starts after
    ``study.ask()`` has returned, and its stale check skips RUNNING trials that have no heartbeat
    at all.  A worker killed in between -- one or more database round trips, long on a busy
    machine -- left its trial RUNNING for ever: never failed, never retried.  Here a new RUNNING
    trial gets its heartbeat in the transaction that creates it, and a waiting trial (a retry)
    gets one just before it is set RUNNING.
    """

    def _get_prepared_new_trial(self, study_id: int, template_trial: Any, session: Any) -> Any:
        from optuna.storages._rdb import models

        trial = super()._get_prepared_new_trial(study_id, template_trial, session)
        if self.heartbeat_interval is not None and trial.state == optuna.trial.TrialState.RUNNING:
            session.add(models.TrialHeartbeatModel(trial_id=trial.trial_id))
        return trial

    def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
        if self.heartbeat_interval is not None and state == optuna.trial.TrialState.RUNNING:
            self.record_heartbeat(trial_id)  # a WAITING trial, not yet checked for staleness
        return super().set_trial_state_values(trial_id, state, values)


def make_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 30,
    grace_period: int | None = None,
    max_retry: int = 2,
) -> optuna.storages.BaseStorage:
    """Build the storage behind ``url``; errors are one line naming the URL without password.

    ``grpc://HOST:PORT`` joins a storage served by ``python -m hpo.run proxy`` (no heartbeat:
    Optuna's gRPC proxy cannot record one, so crashed trials there stay RUNNING).
    ``heartbeat_interval=None`` gives an RDB storage without heartbeat (the proxy's own: the
    trials it creates for its workers get no heartbeat, so no other worker fails them).
    """
    shown = mask_url(url)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not scheme:
        raise StorageError(f"malformed storage URL {shown!r}: expected e.g. sqlite:///studies/hpo.db")
    if scheme == "grpc":
        return _grpc_storage(url)
    import sqlalchemy.engine
    import sqlalchemy.exc

    try:
        sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:  # a port that is not a number, a stray bracket
        raise StorageError(f"malformed storage URL {shown!r}: {_scrub(str(e), url)}") from None
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if scheme.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StorageError(f"cannot create the folder of {shown}: {e.strerror}") from None
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif scheme.startswith("postgresql") or scheme.startswith("mysql"):
        engine_kwargs.update(pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, connect_args={"connect_timeout": CONNECT_TIMEOUT})
    else:
        raise StorageError(
            f"unsupported storage URL {shown!r}: use sqlite:///, postgresql+psycopg2://, mysql+pymysql:// or grpc://"
        )
    hide_password_in_logs(url)
    for attempt in range(INIT_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                if heartbeat_interval is None:
                    storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
                else:
                    storage = HeartbeatRDBStorage(
                        url,
                        engine_kwargs=engine_kwargs,
                        heartbeat_interval=heartbeat_interval,
                        grace_period=grace_period,
                        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
                    )
                if scheme.startswith("sqlite"):
                    _sqlite_wal(storage)
                return storage
        except ImportError as e:  # Optuna re-raises the driver's ImportError as its own, without the name
            missing = getattr(e.__cause__, "name", None) or e.name or e
            extra, driver = ("postgres", "postgresql+psycopg2") if scheme.startswith("postgresql") else ("mysql", "mysql+pymysql")
            raise StorageError(
                f"no database driver for {shown} (no module {missing!r}): use {driver}:// and pip install 'hpo[{extra}]'"
            ) from None
        except Exception as e:  # SQLAlchemy's errors carry the driver's message in .orig
            if attempt + 1 < INIT_ATTEMPTS and _is_creation_race(e):
                time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))
                continue
            orig = getattr(e, "orig", None) or e
            where = "" if scheme.startswith("sqlite") else f" (host {_host(url)})"
            raise StorageError(f"cannot open storage {shown}{where}: {_scrub(str(orig), url)}") from None
    raise AssertionError("unreachable")


def requeue_trial(study: optuna.Study, storage: Any, trial: optuna.trial.FrozenTrial, max_retries: int) -> bool:
    """Queue a FAIL trial again (WAITING, same parameters) as the heartbeat retry does; True if queued.

    Optuna re-queues only trials whose worker stopped beating (a killed process).  A trial that
    a signal ended is stored as FAIL by Optuna itself and would be lost, so the worker hands it
    to the same :class:`optuna.storages.RetryHeartbeatStaleTrialCallback` -- the storage's own
    where it has one -- which records ``failed_trial`` and ``retry_history`` in the new trial's
    system attributes and stops after ``max_retries`` retries of one original trial.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
        if retry is None:  # gRPC proxy: no heartbeat, same retry
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retries)
        retry(study, copy.deepcopy(trial))
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    return any(t.system_attrs.get("retry_history", [])[-1:] == [trial.number] for t in waiting)


# --------------------------------------------------------------------------------------------
# Samplers and pruners


def _construct(cls: type, key: str, options: dict[str, Any], **given: Any) -> Any:
    import difflib

    valid = [p for p in inspect.signature(cls).parameters if p not in given]
    for name in options:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else (f"; valid: {', '.join(valid)}" if valid else "; it takes none")
            raise ConfigError(f"{cls.__name__} has no option {name!r}{hint}", key=f"{key}.{name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**given, **options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{cls.__name__}: {str(e).splitlines()[0]}", key=key) from None


def make_sampler(cfg: StudyConfig, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded with ``study.seed + seed_offset`` (no seed: random)."""
    from hpo.space import grid_search_space

    opts = dict(cfg.study.sampler_options)
    seed = None if cfg.study.seed is None else cfg.study.seed + seed_offset
    key = "study.sampler_options"
    if cfg.study.sampler == "tpe":
        return _construct(optuna.samplers.TPESampler, key, opts, seed=seed)
    if cfg.study.sampler == "random":
        return _construct(optuna.samplers.RandomSampler, key, opts, seed=seed)
    return _construct(optuna.samplers.GridSampler, key, opts, search_space=grid_search_space(cfg), seed=seed)


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    """The study's pruner, inside :class:`hpo.pruners.EpochCap` unless ``objective.cap = false``.

    Its default warm-up and resources are one epoch's checks: steps reported to the pruner are
    checks, epochs or ``objective.checks_per_epoch`` checks per epoch.  Options given in
    ``study.pruner_options`` are taken as they are.
    """
    from hpo.pruners import EpochCap

    inner = _inner_pruner(cfg)
    if not cfg.objective.cap:
        return inner
    return EpochCap(inner, cfg.objective.max_epochs, slack=cfg.objective.cap_slack)


def _inner_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    opts = dict(cfg.study.pruner_options)
    key = "study.pruner_options"
    name = cfg.study.pruner
    k = cfg.objective.checks_per_epoch
    if name == "median":
        return _construct(optuna.pruners.MedianPruner, key, {"n_startup_trials": 5, "n_warmup_steps": k, **opts})
    if name == "percentile":
        return _construct(
            optuna.pruners.PercentilePruner, key, {"percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": k, **opts}
        )
    if name == "hyperband":
        return _construct(
            optuna.pruners.HyperbandPruner, key, {"min_resource": k, "max_resource": cfg.objective.max_epochs * k, **opts}
        )
    if name == "successive_halving":
        return _construct(optuna.pruners.SuccessiveHalvingPruner, key, {"min_resource": k, **opts})
    return _construct(optuna.pruners.NopPruner, key, opts)


# --------------------------------------------------------------------------------------------
# Studies


def open_study(cfg: StudyConfig, storage: optuna.storages.BaseStorage, study_name: str | None = None) -> optuna.Study:
    """Create the study or join it by name; refuse to resume one whose costs mean something else.

    Nothing is written when the study exists and does not match.
    """
    from hpo.space import distributions

    name = study_name or cfg.study.name
    sampler, pruner = make_sampler(cfg), make_pruner(cfg)
    identity = cfg.identity()
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        study = None
    if study is not None:
        if study.directions != [optuna.study.StudyDirection.MINIMIZE]:
            raise StudyMismatchError(f"study {name!r} exists and is not a minimize study: choose another --study-name")
        stored = study.user_attrs.get(STUDY_ATTR, {}).get("identity", {})
        for key, value in identity.items():
            if key in stored and stored[key] != value:
                raise StudyMismatchError(
                    f"{cfg.source}: {key}: study {name!r} was run with {stored[key]!r}, not {value!r}; "
                    "costs under different settings cannot be compared: use another --study-name"
                )
        _check_space(cfg, study, distributions(cfg))
        return study
    study = optuna.create_study(
        storage=storage, study_name=name, direction="minimize", sampler=sampler, pruner=pruner, load_if_exists=True
    )
    if STUDY_ATTR not in study.user_attrs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(["epochs_to_target"])
            study.set_user_attr(
                STUDY_ATTR,
                {"identity": identity, "source": cfg.source, "data": dataclasses.asdict(cfg.data), "config": cfg.raw},
            )
        except Exception:  # another worker created the same study at the same instant and wrote them first
            if STUDY_ATTR not in optuna.load_study(study_name=name, storage=storage).user_attrs:
                raise
        else:
            _enqueue_warm_start(study, cfg)
            _save_note(study, cfg)
    return study


def _enqueue_warm_start(study: optuna.Study, cfg: StudyConfig) -> None:
    """``study.enqueue``: the configurations the study starts with (checked by hpo.config)."""
    from hpo.space import distributions

    searched = distributions(cfg)
    for i, params in enumerate(cfg.study.enqueue):  # names the space fixes are not Optuna parameters
        study.enqueue_trial({k: v for k, v in params.items() if k in searched}, user_attrs={"warm_start": i})


def _save_note(study: optuna.Study, cfg: StudyConfig, answer: Any = None) -> None:
    """The study's markdown note for optuna-dashboard; a note that cannot be saved is a warning."""
    from hpo.note import save_study_note

    try:
        save_study_note(study, cfg, answer)
    except Exception as e:  # noqa: BLE001 - a note is never worth a study
        warnings.warn(f"study {study.study_name!r}: note not saved: {type(e).__name__}: {e}", stacklevel=2)


def _check_space(cfg: StudyConfig, study: optuna.Study, new: dict[str, Any]) -> None:
    """A categorical parameter must keep its choices across runs of one study (Optuna's rule)."""
    seen: set[str] = set()
    for trial in study.get_trials(deepcopy=False):
        for name, old in trial.distributions.items():
            if name in seen or name not in new:
                continue
            seen.add(name)
            try:
                check_distribution_compatibility(old, new[name])
            except ValueError:
                raise StudyMismatchError(
                    f"{cfg.source}: parameter {name!r} of study {study.study_name!r} was searched as {old}, "
                    f"now {new[name]}; Optuna cannot mix them: use another --study-name"
                ) from None
