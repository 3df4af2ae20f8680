"""Storage URL -> Optuna storage (heartbeat, retry); re-queueing a trial; passwords hidden.

Only this module builds storages.  SQLite is the default and suits one machine with few
processes; PostgreSQL (``postgresql+psycopg2://``) and MySQL/MariaDB (``mysql+pymysql://``) are
for many workers sharing one study.  URLs are shown with the password hidden, always.
"""

from __future__ import annotations

import copy
import os
import random
import re
import stat
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import optuna

from hpo.errors import StorageError
from hpo.redact import host_of as _host
from hpo.redact import mask_url
from hpo.redact import one_line as _scrub
from hpo.redact import register_url as hide_password_in_logs

__all__ = [
    "DEFAULT_STORAGE",
    "HeartbeatRDBStorage",
    "make_storage",
    "hide_password_in_logs",
    "mask_url",
    "requeue_trial",
    "resolve_url",
    "use_wal",
    "check_sqlite_file",
    "EmptyStorage",
]

DEFAULT_STORAGE = "sqlite:///studies/hpo.db"
CONNECT_TIMEOUT = 10  # seconds before an unreachable database is reported
# Connections one worker process may hold: pool_size + max_overflow (see docs/cluster.md).
POOL_SIZE, MAX_OVERFLOW = 2, 2
INIT_ATTEMPTS = 6  # workers starting at the same instant race to create the tables: retry


def resolve_url(url: str | None) -> str:
    """``--storage``, else ``HPO_STORAGE`` (an empty one counts as unset), else the default SQLite
    file.  Both given and different is refused: work would land in a storage the user did not
    mean (a stale export, or a flag left in a job script)."""
    env = os.environ.get("HPO_STORAGE")
    if url and env and url != env:
        raise StorageError(
            f"--storage {mask_url(url)!r} and $HPO_STORAGE {mask_url(env)!r} name different storages: give one of them"
        )
    return url or env or DEFAULT_STORAGE


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
        raise StorageError(f"malformed gRPC storage URL {mask_url(url)!r}: expected grpc://HOST:PORT")
    host, port = m.group(1), int(m.group(2))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
    except ImportError as e:
        raise StorageError(f"no gRPC support for {mask_url(url)} ({e.name or e}): pip install 'hpo[grpc]'") from None
    try:
        proxy.wait_server_ready(timeout=CONNECT_TIMEOUT)
    except Exception:  # grpc.FutureTimeoutError
        proxy.close()
        raise StorageError(
            f"cannot reach the storage proxy at {host}:{port} within {CONNECT_TIMEOUT} s: "
            f"start it with python -m hpo.run proxy --storage URL --port {port}"
        ) from None
    return proxy


def use_wal(storage: Any) -> None:
    """Write-ahead log and ``synchronous=NORMAL`` on every connection to a SQLite study file (no
    effect on other storages).  Only a study that passed its checks switches a file to it: the
    journal mode is stored in the file, for good.

    A trial makes ~25 small commits (reports, user attributes); in SQLite's default mode each
    one waits for the disk (fsync).  With the write-ahead log, commits append to ``FILE-wal``
    and only checkpoints sync: readers (the dashboard, other workers) no longer block the
    writer, a crashed process loses nothing, and a power cut can lose only the last commits,
    never corrupt the file (https://www.sqlite.org/wal.html).  The write-ahead log needs all
    processes on one machine, which SQLite studies need anyway.
    """
    import sqlalchemy

    storage = getattr(storage, "_backend", storage)  # under Optuna's cache
    engine = getattr(storage, "engine", None)
    if engine is None or engine.dialect.name != "sqlite" or getattr(engine, "_hpo_wal", False):
        return

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(engine, "connect", on_connect)
    engine._hpo_wal = True
    engine.dispose()  # connections made before do not have it


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


MODES = ("write", "read", "browse")  # see make_storage


class EmptyStorage(StorageError):
    """A database without Optuna's tables: it holds no studies (reading commands do not create them)."""


def sqlite_file(url: str) -> Path | None:
    """The file behind an SQLite URL, None for other URLs.

    In-memory databases are refused: each connection would see another empty database, and
    nothing is kept after the command.
    """
    if not url.startswith("sqlite"):
        return None
    import sqlalchemy.engine
    import sqlalchemy.exc

    shown = mask_url(url)
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:
        raise StorageError(f"malformed storage URL {shown!r}: {_scrub(str(e), url)}") from None
    database = parsed.database or ""
    if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
        raise StorageError(
            f"{shown} is an in-memory database, which keeps nothing after the command: give a file, e.g. {DEFAULT_STORAGE}"
        )
    if parsed.query:
        raise StorageError(
            f"{shown}: SQLite URLs take no options here (got {', '.join(sorted(parsed.query))}): give sqlite:///PATH"
        )
    return Path(database)


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def check_sqlite_file(url: str, *, create: bool) -> Path | None:
    """The SQLite file of ``url`` (None for other URLs), checked before SQLite opens it.

    It must be a regular file -- SQLite would hang on a FIFO and fail obscurely on a folder or a
    device -- or, with ``create``, be missing in a folder that exists or can be made.  Reading
    commands (``create=False``) never create a file where a typo pointed.
    """
    path = sqlite_file(url)
    if path is None:
        return None
    shown = mask_url(url)
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        if not create:
            raise StorageError(f"no SQLite file {str(path)!r} (storage {shown}): run a study first or check --storage") from None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create the folder of {shown}: {e.strerror}") from None
        return path
    except OSError as e:  # a symlink loop, a name too long, no permission
        raise StorageError(f"cannot use {shown}: {e.strerror or e}") from None
    kind = next((what for test, what in _KINDS if test(mode)), None if stat.S_ISREG(mode) else "not a regular file")
    if kind is not None:
        raise StorageError(f"cannot use {shown}: {str(path)!r} is {kind}, not an SQLite file")
    return path


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _read_only_url(path: Path) -> str:
    """An SQLite URL that opens ``path`` on read-only media: read-only and ``immutable``, since
    SQLite could not even make the lock files a read needs."""
    from urllib.parse import quote

    return f"sqlite:///file:{quote(str(path.absolute()))}?mode=ro&immutable=1&uri=true"


def _query_only(engine: Any) -> None:
    """Every connection of ``engine`` refuses writes (``PRAGMA query_only``).  Unlike a read-only
    open, such a connection still removes the write-ahead log's ``-wal`` and ``-shm`` files when
    it is the last to close, so reading leaves the folder as it was."""
    import sqlalchemy

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only = ON")
        cursor.close()

    sqlalchemy.event.listen(engine, "connect", on_connect)
    engine.dispose()


def _check_tables(url: str, shown: str, engine_kwargs: dict[str, Any], mode: str, sqlite: bool) -> None:
    """Before Optuna touches the database: refuse one that is no Optuna storage.

    Reading (``read``, ``browse``) needs Optuna's tables and never creates them; ``write`` creates
    them in an empty database (or a PostgreSQL/MySQL database shared with other applications'
    tables), never in an SQLite file of another application.
    """
    import sqlalchemy
    from optuna.storages._rdb import models

    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        names = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    ours = set(models.BaseModel.metadata.tables)
    if names & ours:
        missing = ours - names
        if missing and mode != "write":
            raise StorageError(
                f"{shown} was made by another Optuna version (no table {sorted(missing)[0]!r}): "
                f"upgrade it with: optuna storage upgrade --storage URL"
            )
        return
    if not names:
        if mode != "write":
            raise EmptyStorage(f"no studies in {shown}: it holds no Optuna tables (python -m hpo.run study creates them)")
        return
    if mode == "write" and not sqlite:
        return
    listed = ", ".join(sorted(names)[:4]) + (", ..." if len(names) > 4 else "")
    raise StorageError(f"{shown} is no Optuna storage: it holds other tables ({listed}) and none of Optuna's")


def make_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 30,
    grace_period: int | None = None,
    max_retry: int = 2,
    mode: str = "write",
) -> optuna.storages.BaseStorage:
    """Build the storage behind ``url``; errors are one line naming the URL without password.

    ``mode``:

    * ``"write"`` (running a study): Optuna's tables are created where missing.  Call
      :func:`use_wal` once the study's checks have passed.
    * ``"read"`` (``list``, ``report``): connections that cannot write (SQLite with ``query_only``,
      opened read-only and immutable on read-only media; PostgreSQL and MySQL sessions in read-only transactions), no
      heartbeat; a database without Optuna's tables raises :class:`EmptyStorage`.
    * ``"browse"`` (the dashboard): like ``read``, but its users may write notes or delete
      studies through it, so the connections can write where the storage can.

    ``grpc://HOST:PORT`` joins a storage served by ``python -m hpo.run proxy`` (no heartbeat:
    Optuna's gRPC proxy cannot record one, so crashed trials there stay RUNNING).
    ``heartbeat_interval=None`` gives an RDB storage without heartbeat (the proxy's own: the
    trials it creates for its workers get no heartbeat, so no other worker fails them).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, but got {mode!r}")
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
    sqlite = scheme.startswith("sqlite")
    open_url = url
    if sqlite:
        path = check_sqlite_file(url, create=mode == "write")
        if mode != "write" and not _writable(path):
            open_url = _read_only_url(path)
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif scheme.startswith("postgresql") or scheme.startswith("mysql"):
        connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT}
        if mode == "read" and scheme.startswith("postgresql"):
            connect_args["options"] = "-c default_transaction_read_only=on"
        elif mode == "read":
            connect_args["init_command"] = "SET SESSION TRANSACTION READ ONLY"
        engine_kwargs.update(pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, connect_args=connect_args)
    else:
        raise StorageError(
            f"unsupported storage URL {shown!r}: use sqlite:///, postgresql+psycopg2://, mysql+pymysql:// or grpc://"
        )
    hide_password_in_logs(url)
    for attempt in range(INIT_ATTEMPTS):
        try:
            _check_tables(open_url, shown, engine_kwargs, mode, sqlite)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                if mode != "write":
                    storage = optuna.storages.RDBStorage(open_url, engine_kwargs=engine_kwargs, skip_table_creation=True)
                elif heartbeat_interval is None:
                    storage = optuna.storages.RDBStorage(open_url, engine_kwargs=engine_kwargs)
                else:
                    storage = HeartbeatRDBStorage(
                        open_url,
                        engine_kwargs=engine_kwargs,
                        heartbeat_interval=heartbeat_interval,
                        grace_period=grace_period,
                        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
                    )
                if sqlite:
                    if mode == "read":
                        _query_only(storage.engine)
                    _SQLITE_ENGINES.add(storage.engine)
                return storage
        except StorageError:
            raise
        except ImportError as e:  # Optuna re-raises the driver's ImportError as its own, without the name
            missing = getattr(e.__cause__, "name", None) or e.name or e
            extra, driver = ("postgres", "postgresql+psycopg2") if scheme.startswith("postgresql") else ("mysql", "mysql+pymysql")
            raise StorageError(
                f"no database driver for {shown} (no module {missing!r}): use {driver}:// and pip install 'hpo[{extra}]'"
            ) from None
        except Exception as e:  # SQLAlchemy's errors carry the driver's message in .orig
            if mode == "write" and attempt + 1 < INIT_ATTEMPTS and _is_creation_race(e):
                time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))
                continue
            orig = getattr(e, "orig", None) or e
            where = "" if sqlite else f" (host {_host(url)})"
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
