"""Study-file keys and flags of shared studies: validated before anything is stored."""

from __future__ import annotations

import pytest

from hpo.api import load_config
from hpo.errors import ConfigError
from hpo.launch import shares as _shares
from tests.conftest import STUDIES, run_cli

TINY = STUDIES / "tiny.toml"


def test_defaults():
    s = load_config(TINY).study
    assert (s.max_trials, s.heartbeat_interval, s.grace_period, s.max_retries) == (None, 30, None, 2)


def test_keys_are_read():
    s = load_config(
        TINY, ["study.max_trials=50", "study.heartbeat_interval=5", "study.grace_period=20", "study.max_retries=0"]
    ).study
    assert (s.max_trials, s.heartbeat_interval, s.grace_period, s.max_retries) == (50, 5, 20, 0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("study.max_trials=0", "study.max_trials: must be in [1, 1000000], but got 0"),
        ("study.max_trials=2.5", "study.max_trials: must be an integer in [1, 1000000], but got 2.5"),
        ("study.heartbeat_interval=0", "study.heartbeat_interval: must be in [1, 3600], but got 0"),
        ("study.grace_period=30", "study.grace_period: must be longer than study.heartbeat_interval (30 s), but got 30"),
        ("study.max_retries=-1", "study.max_retries: must be in [0, 100], but got -1"),
        ("study.max_trial=5", "study.max_trial: unknown key; did you mean 'max_trials'?"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(TINY, [override])
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("total", "workers", "shares"),
    [(10, 4, [3, 3, 2, 2]), (4, 2, [2, 2]), (3, 4, [1, 1, 1]), (None, 3, [None, None, None]), (0, 2, [])],
)
def test_trials_are_split_between_workers(total, workers, shares):
    assert _shares(total, workers) == shares


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "argument --workers: must be in [1, 256], but got 0"),
        (["--threads", "x"], "argument --threads: expected a whole number, but got 'x'"),
        (["--set", "study.grace_period=1", "--set", "study.heartbeat_interval=1"], "study.grace_period: must be longer"),
    ],
)
def test_bad_flags_are_one_line_and_store_nothing(tmp_path, args, message):
    db = tmp_path / "hpo.db"
    out = run_cli("study", str(TINY), "--storage", f"sqlite:///{db}", "--workers", "2", *args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr
    assert not db.exists()


def test_sqlite_study_files_use_the_write_ahead_log(tmp_path):
    import sqlite3

    from hpo.storage import make_storage
    from hpo.study import open_study

    db = tmp_path / "wal.db"
    sqlite3.connect(db).close()  # an existing file in SQLite's default (rollback journal) mode
    storage = make_storage(f"sqlite:///{db}")
    study = open_study(load_config(TINY), storage)
    study.enqueue_trial({})
    with storage.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    outside = sqlite3.connect(db)  # the mode is stored in the file: every reader sees it
    assert outside.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert outside.execute("SELECT count(*) FROM trials").fetchone()[0] == 1
    outside.close()
