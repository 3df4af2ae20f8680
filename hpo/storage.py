"""Storage URL -> Optuna storage (heartbeat, retry); re-queueing a trial; passwords hidden.

Only this module builds storages.  SQLite is the default and suits one machine with few
processes; PostgreSQL (``postgresql+psycopg2://``) and MySQL/MariaDB (``mysql+pymysql://``) are
for many workers sharing one study.  URLs are shown with the password hidden, always.
"""

from __future__ import annotations

import copy
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

from hpo.errors import StorageError

__all__ = [
    "DEFAULT_STORAGE",
    "HeartbeatRDBStorage",
    "make_storage",
    "hide_password_in_logs",
    "mask_url",
    "requeue_trial",
    "resolve_url",
]

DEFAULT_STORAGE = "sqlite:///studies/hpo.db"
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


def existing_sqlite(url: str) -> str:
    """Reading commands must not create an empty SQLite file where a typo pointed."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///") :])
        if not path.is_file():
            raise StorageError(f"no SQLite file {str(path)!r} (storage {url}): run a study first or check --storage")
    return url
