"""Bad input, run for real: every case is a ``python -m hpo.run ...`` subprocess that must exit 2
with one line naming what is wrong (file, key, value or host), no traceback, no password, and
leave the stored studies (the SQLite file, byte for byte) and the folder it runs in as they were.

The stored studies are made once per module: a real hpo study of two tiny digits trials and a
study made by plain Optuna.  Most cases fail before TensorFlow is imported, in well under a second.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
import socket
import uuid
from pathlib import Path
from string import Template

import numpy as np
import optuna
import pytest

from tests.conftest import PG_ADMIN_URL, _service_missing, cli_env, free_port, run_cli

SECRET = "pw-" + uuid.uuid4().hex[:10]  # in many cases' URLs; must never be printed

BASE = """\
[study]
name = "base"
sampler = "random"
pruner = "none"
seed = 0
n_trials = 2

[data]
dataset = "digits"
train_size = 300

[objective]
target = 0.99
max_epochs = 1

[space.dense]
units = [16, 32]
learning_rate = { low = 1e-3, high = 1e-2, log = true }
batch_size = 64
"""
TARGET_LINE = BASE.splitlines().index("target = 0.99") + 1

# Study files, each the base file with one mistake.
BAD_FILES = {
    "syntax.toml": BASE.replace("target = 0.99", "target = = 0.99"),
    "unknown_key.toml": BASE.replace("target = 0.99", "targe = 0.99"),
    "wrong_type.toml": BASE.replace("max_epochs = 1", 'max_epochs = "ten"'),
    "empty_choice.toml": BASE.replace("units = [16, 32]", "units = []"),
    "low_gt_high.toml": BASE.replace("units = [16, 32]", "units = { low = 64, high = 16 }"),
    "log_low_0.toml": BASE + "dropout = { low = 0.0, high = 0.5, log = true }\n",
    "target_0.toml": BASE.replace("target = 0.99", "target = 0"),
    "dataset.toml": BASE.replace('"digits"', '"cifar10"'),
    "enqueue_range.toml": BASE.replace(
        "n_trials = 2", "n_trials = 2\nenqueue = [{units_l0 = 16}, {units_l0 = 16, learning_rate = 0.5}]"
    ),
    "enqueue_name.toml": BASE.replace("n_trials = 2", "n_trials = 2\nenqueue = [{unit = 16}]"),
}

# The four IDX files a Fashion-MNIST folder holds, 20 training and 10 test images.
IDX = {
    "train-images-idx3-ubyte.gz": (2051, np.zeros((20, 28, 28), np.uint8)),
    "train-labels-idx1-ubyte.gz": (2049, np.arange(20, dtype=np.uint8) % 10),
    "t10k-images-idx3-ubyte.gz": (2051, np.zeros((10, 28, 28), np.uint8)),
    "t10k-labels-idx1-ubyte.gz": (2049, np.arange(10, dtype=np.uint8)),
}
BROKEN = "train-images-idx3-ubyte.gz"


def idx_bytes(magic: int, array: np.ndarray) -> bytes:
    dims = b"".join(n.to_bytes(4, "big") for n in array.shape)
    return magic.to_bytes(4, "big")[:3] + bytes([array.ndim]) + dims + array.tobytes()


def write_data_dirs(root: Path) -> None:
    """``good`` and one folder per way an IDX file can be broken (always the training images)."""
    breakages = {
        "good": lambda raw: gzip.compress(raw),
        "truncated": lambda raw: gzip.compress(raw[: len(raw) // 2]),
        "wrong_magic": lambda raw: gzip.compress((1234).to_bytes(4, "big") + raw[4:]),
        "not_gzip": lambda raw: b"plain bytes",
        "cut_gzip": lambda raw: gzip.compress(raw)[:30],
        "lacks_a_file": None,
    }
    for name, breakage in breakages.items():
        folder = root / name
        folder.mkdir(parents=True)
        for fname, (magic, array) in IDX.items():
            raw = idx_bytes(magic, array)
            if breakage is None:
                if fname != "t10k-labels-idx1-ubyte.gz":
                    (folder / fname).write_bytes(gzip.compress(raw))
            else:
                (folder / fname).write_bytes(breakage(raw) if fname == BROKEN else gzip.compress(raw))


def stored(url: str) -> list[tuple]:
    """Everything a case could change: every study with its attributes and trials."""
    storage = optuna.storages.RDBStorage(url)
    try:
        out = []
        for summary in sorted(optuna.get_all_study_summaries(storage), key=lambda s: s.study_name):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            trials = [
                (t.number, t.state, t.values, t.params, t.distributions, t.user_attrs, t.intermediate_values, t.datetime_start)
                for t in study.get_trials(deepcopy=False)
            ]
            system = storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))
            out.append((study.study_name, study.directions, study.user_attrs, system, trials))
        return out
    finally:
        storage.engine.dispose()


def files_of(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("bad_input")
    (tmp / "base.toml").write_text(BASE)
    for name, text in BAD_FILES.items():
        (tmp / name).write_text(text)
    (tmp / "not_utf8.toml").write_bytes(b"\xff\xfe[study]\n")
    (tmp / "a_file").write_text("not a folder, not a database")
    write_data_dirs(tmp / "data")
    store = tmp / "store"  # the stored studies, alone in their folder
    url = f"sqlite:///{store / 'hpo.db'}"
    made = run_cli("study", str(tmp / "base.toml"), "--storage", url, "--no-progress", "--no-artifacts")
    assert made.returncode == 0, made.stderr[-2000:]
    storage = optuna.storages.RDBStorage(url)
    plain = optuna.create_study(storage=storage, study_name="plain", direction="maximize")  # not made by hpo
    plain.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    storage.engine.dispose()
    before = stored(url)
    assert [s[0] for s in before] == ["base", "plain"] and len(before[0][4]) == 2
    shutil.copytree(store, tmp / "pristine")  # put back after a failed case, so that one failure stays one
    return {
        "ctx": {"tmp": str(tmp), "base": str(tmp / "base.toml"), "url": url, "data": str(tmp / "data"), "pw": SECRET},
        "url": url,
        "store": store,
        "pristine": tmp / "pristine",
        "files": files_of(store),
        "stored": before,
    }


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # $tmp $base $url $data $pw $port are filled in
    needles: tuple[str, ...]  # what the one line must name
    env: tuple[tuple[str, str], ...] = ()
    needs: str | None = None  # "postgres" or "mysql": a real server


RUN = ("study", "$base", "--storage", "$url", "--no-progress", "--no-artifacts")
FASHION = ("--set", "data.dataset=fashion_mnist", "--set")  # + "data.data_dir=..."
PG_REFUSED = "postgresql+psycopg2://postgres:$pw@127.0.0.1:$port/test"
PG_ABSENT_DB = PG_ADMIN_URL.replace("@", ":$pw@", 1).rsplit("/", 1)[0] + "/hpo_absent_db"
PROXY = "http://127.0.0.1:$port"  # a closed port: every download fails at once
OFFLINE = {"HOME": "$tmp/home", "KERAS_HOME": "$tmp/home/.keras", "https_proxy": PROXY, "HTTPS_PROXY": PROXY}


def case(id: str, *argv: str, needs: str | None = None, env: dict[str, str] | None = None, names: tuple[str, ...]) -> Case:
    return Case(id, argv, names, tuple((env or {}).items()), needs)


# One line per case: its id (category/what), the command, then what the error line must name.
# fmt: off
CASES = [
    # study files (no --storage: the default studies/hpo.db must not appear where the command ran)
    case("file/missing", "study", "$tmp/nope.toml", names=("$tmp/nope.toml: study file not found",)),
    case("file/a-folder", "study", "$tmp/data", names=("$tmp/data: cannot read study file: it is a folder",)),
    case("file/not-utf8", "study", "$tmp/not_utf8.toml", names=("not_utf8.toml: cannot read study file: not UTF-8 text (byte 0xff at offset 0)",)),
    case("file/toml-syntax", "study", "$tmp/syntax.toml", names=("syntax.toml: TOML syntax error", f"line {TARGET_LINE}")),
    case("file/unknown-key", "study", "$tmp/unknown_key.toml", names=("objective.targe: unknown key; did you mean 'target'?",)),
    case("file/wrong-type", "study", "$tmp/wrong_type.toml", names=("wrong_type.toml: objective.max_epochs:", "'ten'")),
    case("file/empty-choice", "study", "$tmp/empty_choice.toml", names=("space.dense.units: empty choice list",)),
    case("file/low-gt-high", "study", "$tmp/low_gt_high.toml", names=("space.dense.units:", "low=64 > high=16")),
    case("file/log-range-low-0", "study", "$tmp/log_low_0.toml", names=("space.dense.dropout:", "log range needs low > 0")),
    case("file/target-0", "study", "$tmp/target_0.toml", names=("target_0.toml: objective.target: must be in (0, 1], but got 0",)),
    case("file/unknown-dataset", "study", "$tmp/dataset.toml", names=("data.dataset: unknown value 'cifar10'",)),
    case("file/enqueue-out-of-range", "study", "$tmp/enqueue_range.toml", names=("study.enqueue[1].learning_rate:", "0.5")),
    case("file/enqueue-unknown-name", "study", "$tmp/enqueue_name.toml", names=("study.enqueue[0].unit:", "not a parameter")),
    # --set
    case("set/no-equals", *RUN, "--set", "objective.target", names=("--set expects KEY=VALUE, but got 'objective.target'",)),
    case("set/target-1.5", *RUN, "--set", "objective.target=1.5", names=("base.toml (--set): objective.target:", "1.5")),
    case("set/unknown-key", *RUN, "--set", "space.dense.unitz=3", names=("space.dense.unitz: unknown key; did you mean 'units'?",)),
    case("set/wrong-type", *RUN, "--set", "space.dense.units=many", names=("(--set): space.dense.units:", "'many'")),
    case("set/empty-choice", *RUN, "--set", "space.dense.units=[]", names=("(--set): space.dense.units: empty choice list",)),
    case("set/bad-toml", *RUN, "--set", "space.dense.units=[16,", names=("--set space.dense.units: cannot parse value '[16,'",)),
    # command-line flags
    case("flag/n-trials-negative", *RUN, "--n-trials", "-1", names=("--n-trials: must be in [0, 1000000], but got -1",)),
    case("flag/workers-0", *RUN, "--workers", "0", names=("--workers: must be in [1, 256], but got 0",)),
    case("flag/timeout-word", *RUN, "--timeout", "soon", names=("--timeout", "'soon'")),
    case("flag/unknown-command", "optimise", "$base", names=("invalid choice: 'optimise'",)),
    case("flag/empty-storage", *RUN, "--storage", "", names=("--storage: must not be empty",)),
    case("flag/empty-study-name", *RUN, "--study-name", "", names=("--study-name: must not be empty",)),
    case("flag/tensorboard-batches-alone", *RUN, "--tensorboard-batches", names=("--tensorboard-batches needs --tensorboard",)),
    case("flag/tensorboard-a-file", *RUN, "--tensorboard", "$tmp/a_file", names=("--tensorboard: '$tmp/a_file' is a file",)),
    case("flag/artifact-dir-a-file", *RUN[:-1], "--artifact-dir", "$tmp/a_file", names=("--artifact-dir: '$tmp/a_file' is a file",)),
    case("flag/report-out-a-file", "report", "base", "--storage", "$url", "--out", "$tmp/a_file", names=("--out: '$tmp/a_file'",)),
    case("flag/dashboard-port-70000", "dashboard", "--storage", "$url", "--port", "70000", names=("--port", "70000")),
    case("flag/dashboard-unknown-host", "dashboard", "--storage", "$url", "--host", "no-such-host.invalid", "--port", "$port",
         names=("cannot listen on no-such-host.invalid:$port: unknown host",)),
    # environment variables (no --artifact-dir / --no-artifacts: the default folder must not be made either)
    case("env/HPO_STORAGE-no-scheme", *RUN[:2], env={"HPO_STORAGE": "hpo.db"}, names=("malformed storage URL 'hpo.db'",)),
    case("env/HPO_STORAGE-refused", "list", env={"HPO_STORAGE": PG_REFUSED}, names=("(host 127.0.0.1:$port)", "refused")),
    case("env/HPO_STORAGE-unsupported", "dashboard", "--port", "$port", env={"HPO_STORAGE": "redis://127.0.0.1:6379/0"},
         names=("unsupported storage URL 'redis://127.0.0.1:6379/0'",)),
    case("env/offline-mnist-download", *RUN, "--set", "data.dataset=mnist", env=OFFLINE,  # no MNIST files, no internet
         names=("mnist: no IDX files", "Keras download failed", "mnist.npz")),
    # data folders (the IDX files are tiny fakes written per module)
    case("data/data-dir-missing", *RUN, *FASHION, "data.data_dir=$tmp/none", names=("data.data_dir: folder '$tmp/none' does not exist",)),
    case("data/data-dir-a-file", *RUN, *FASHION, "data.data_dir=$tmp/a_file", names=("data.data_dir: '$tmp/a_file' is a file",)),
    case("data/lacks-a-file", *RUN, *FASHION, "data.data_dir=$data/lacks_a_file", names=("lacks t10k-labels-idx1-ubyte.gz",)),
    case("data/truncated-idx", *RUN, *FASHION, "data.data_dir=$data/truncated", names=(f"truncated/{BROKEN}: truncated IDX file",)),
    case("data/wrong-magic-idx", *RUN, *FASHION, "data.data_dir=$data/wrong_magic",
         names=(f"wrong_magic/{BROKEN}: wrong IDX magic number 1234, expected 2051",)),
    case("data/not-gzip", *RUN, *FASHION, "data.data_dir=$data/not_gzip", names=(f"not_gzip/{BROKEN}: not a readable gzip file",)),
    case("data/cut-gzip", *RUN, *FASHION, "data.data_dir=$data/cut_gzip", names=(f"cut_gzip/{BROKEN}: not a readable gzip file",)),
    case("data/workers-data-dir-missing", *RUN, "--workers", "2", "--study-name", "new", *FASHION, "data.data_dir=$tmp/none",
         names=("data.data_dir: folder '$tmp/none' does not exist",)),
    # storage URLs
    case("url/no-scheme", *RUN, "--storage", "postgres:$pw@localhost/test", names=("malformed storage URL 'postgres:***@localhost/test'",)),
    case("url/port-not-a-number", *RUN, "--storage", "postgresql+psycopg2://postgres:$pw@127.0.0.1:five/test",
         names=("malformed storage URL", "127.0.0.1:five")),
    case("url/refused-port", *RUN, "--storage", PG_REFUSED, names=("postgres:***@127.0.0.1:$port/test", "Connection refused")),
    case("url/password-with-slash", "list", "--storage", "postgresql+psycopg2://postgres:$pw/x@127.0.0.1:$port/test",
         names=("postgres:***@127.0.0.1:$port/test",)),
    case("url/unknown-host", *RUN, "--storage", "postgresql+psycopg2://postgres:$pw@no-such-host.invalid/test",
         names=("(host no-such-host.invalid)",)),
    case("url/postgres-no-such-database", *RUN, "--storage", PG_ABSENT_DB, needs="postgres",
         names=('database "hpo_absent_db" does not exist',)),
    case("url/mariadb-wrong-password", *RUN, "--storage", "mysql+pymysql://root:$pw@127.0.0.1:3306/test", needs="mysql",
         names=("(host 127.0.0.1:3306)", "Access denied for user 'root'")),
    case("url/sqlite-not-a-database", *RUN, "--storage", "sqlite:///$tmp/a_file", names=("sqlite:///$tmp/a_file: file is not a database",)),
    case("url/sqlite-under-a-file", *RUN, "--storage", "sqlite:///$tmp/a_file/hpo.db",
         names=("cannot create the folder of sqlite:///$tmp/a_file/hpo.db",)),
    case("url/list-missing-sqlite-file", "list", "--storage", "sqlite:///$tmp/none.db", names=("no SQLite file '$tmp/none.db'",)),
    case("url/grpc-without-port", *RUN, "--storage", "grpc://127.0.0.1", names=("malformed gRPC storage URL 'grpc://127.0.0.1'",)),
    case("url/report-unknown-study", "report", "nope", "--storage", "$url", names=("no study named 'nope'", "studies: base, plain")),
    case("url/report-not-an-hpo-study", "report", "plain", "--storage", "$url", names=("study 'plain' was not created by hpo",)),
    # resuming the stored study with something else
    case("resume/other-target", *RUN, "--set", "objective.target=0.9", names=("objective.target: study 'base' was run with 0.99, not 0.9",)),
    case("resume/other-monitor", *RUN, "--set", "objective.monitor=accuracy", names=("objective.monitor: study 'base'", "'accuracy'")),
    case("resume/other-max-epochs", *RUN, "--set", "objective.max_epochs=3", names=("objective.max_epochs: study 'base' was run with 1, not 3",)),
    case("resume/other-dataset", *RUN, *FASHION, "data.data_dir=$data/good", names=("data.dataset: study 'base' was run with 'digits'",)),
    case("resume/other-choices", *RUN, "--set", "space.dense.units=[16, 64]", names=("parameter 'units_l0' of study 'base'",)),
    case("resume/other-range", *RUN, "--set", "space.dense.learning_rate={low = 0.1, high = 0.5}", names=("parameter 'learning_rate'",)),
    case("resume/not-minimize", *RUN, "--study-name", "plain", names=("study 'plain' exists and is not a minimize study",)),
    case("resume/workers-other-target", *RUN, "--workers", "2", "--set", "objective.target=0.5", names=("objective.target: study 'base'",)),
    # study names: at most 512 printable characters for a new study; any name shown escaped, on the one line
    case("name/study-name-600", *RUN, "--study-name", "x" * 600, names=("--study-name: a study name has at most 512 characters, but got 600",)),
    case("name/study-name-ansi", *RUN, "--study-name", "\x1b[2K\rhpo: error: forged",
         names=("--study-name: must be printable", "'\\x1b[2K\\rhpo: error: forged'")),
    case("name/study-name-newline", *RUN, "--study-name", "two\nlines", names=("--study-name: must be printable", "'two\\nlines'")),
    case("name/study-name-bidi", *RUN, "--study-name", "\u202egnp.exe", names=("--study-name: must be printable", "\\u202e")),
    case("name/set-study-name-600", *RUN, "--set", "study.name=" + "x" * 600,
         names=("(--set): study.name: a study name has at most 512 characters, but got 600",)),
    case("name/set-study-name-escape", *RUN, "--set", 'study.name="a\\u001b[31mb"', names=("(--set): study.name: must be printable", "\\x1b[31m")),
    case("name/workers-study-name-600", *RUN, "--workers", "2", "--study-name", "y" * 513, names=("at most 512 characters, but got 513",)),
    case("name/report-blank", "report", " ", "--storage", "$url", names=("STUDY_NAME: must not be empty",)),
    case("name/report-unknown-ansi", "report", "\x1b[2K\rhpo: error: forged", "--storage", "$url",
         names=("no study named '\\x1b[2K\\rhpo: error: forged'", "studies: base, plain")),
    case("name/confirm-unknown-ansi", "confirm", "\x1b[1A\x1b[2Kforged", "--storage", "$url", names=("no study named '\\x1b[1A\\x1b[2Kforged'",)),
    case("name/report-unknown-600", "report", "z" * 600, "--storage", "$url", names=("no study named 'zzz", "studies: base, plain")),
    # the dashboard's access token (never echoed) and the host names it answers
    case("dashboard/token-short", "dashboard", "--storage", "$url", "--port", "$port", "--token", "short", names=("--token: a token must be at least 16 characters", "has 5 characters")),
    case("dashboard/token-with-spaces", "dashboard", "--storage", "$url", "--port", "$port", "--token", "$pw and more words", names=("--token: a token must be", "and others")),
    case("dashboard/token-empty", "dashboard", "--storage", "$url", "--port", "$port", "--token", "", names=("--token: must not be empty",)),
    case("dashboard/token-env-not-url-safe", "dashboard", "--storage", "$url", "--port", "$port", env={"HPO_DASHBOARD_TOKEN": "$pw/and?more=x&y"}, names=("HPO_DASHBOARD_TOKEN: a token must be",)),
    case("dashboard/allow-host-url", "dashboard", "--storage", "$url", "--port", "$port", "--allow-host", "http://dash.example/", names=("--allow-host", "'http://dash.example/'")),
    case("dashboard/allow-host-port", "dashboard", "--storage", "$url", "--port", "$port", "--allow-host", "dash.example:8443", names=("--allow-host", "no port", "'dash.example:8443'")),
    case("dashboard/allow-host-wildcard", "dashboard", "--storage", "$url", "--port", "$port", "--allow-host", "*", names=("--allow-host", "'*'")),
    # passwords: a raw "@", ":" or "/" in them, percent-encoded, in the query, anywhere on the command line
    case("password/raw-at", "list", "--storage", "postgresql+psycopg2://postgres:$pw@ss@127.0.0.1:$port/test",
         names=("postgres:***@127.0.0.1:$port/test (host 127.0.0.1:$port)", 'could not translate host name "***"')),
    case("password/raw-at-then-colon", "dashboard", "--port", "$port", "--storage", "postgresql+psycopg2://postgres:$pw@x:y@127.0.0.1:5432/test",
         names=("malformed storage URL 'postgresql+psycopg2://postgres:***@127.0.0.1:5432/test'", "int() with base 10: '***'")),
    case("password/percent-encoded", *RUN[:2], "--storage", "postgresql+psycopg2://postgres:$pw%40x%3Ay%2F@127.0.0.1:$port/test",
         names=("postgres:***@127.0.0.1:$port/test", "refused")),
    case("password/query-in-HPO_STORAGE", "report", "base", env={"HPO_STORAGE": "postgresql+psycopg2://postgres@127.0.0.1:$port/test?password=$pw"},
         names=("postgres@127.0.0.1:$port/test?password=***", "refused")),
    case("password/before-the-command", "--storage", "postgresql+psycopg2://postgres:$pw@x@127.0.0.1:$port/test", "list",
         names=("invalid choice: 'postgresql+psycopg2://postgres:***@127.0.0.1:$port/test'",)),
    case("password/no-scheme-raw-at", *RUN[:2], env={"HPO_STORAGE": "postgres:$pw@a:b@localhost/test"},
         names=("malformed storage URL 'postgres:***@localhost/test'",)),
    case("password/storage-and-env-differ", *RUN, env={"HPO_STORAGE": "postgresql+psycopg2://postgres:$pw@127.0.0.1:$port/test"},
         names=("$$HPO_STORAGE 'postgresql+psycopg2://postgres:***@127.0.0.1:$port/test'",)),
    case("password/mariadb-raw-at-and-query", *RUN[:2], "--storage", "mysql+pymysql://root:$pw@x?password=$pw@127.0.0.1:3306/test",
         needs="mysql", names=("mysql+pymysql://root:***@127.0.0.1:3306/test (host 127.0.0.1:3306)",)),
    # bounds: every number of a study file, --set and the flags, checked before anything is stored
    case("bound/seed-2-32", *RUN, "--seed", "4294967296", names=("--seed: must be in [0, 4294967295], but got 4294967296",)),
    case("bound/set-seed-2-32", *RUN, "--set", "study.seed=4294967296", names=("(--set): study.seed: must be in [0, 4294967295], but got 4294967296",)),
    case("bound/threads-2-31", *RUN, "--threads", "2147483648", names=("--threads: must be in [1, 1024], but got 2147483648",)),
    case("bound/workers-1000", *RUN, "--workers", "1000", names=("--workers: must be in [1, 256], but got 1000",)),
    case("bound/timeout-inf", *RUN, "--timeout", "inf", names=("--timeout: must be in [0, 31536000], but got inf",)),
    case("bound/set-timeout-negative", *RUN, "--set", "study.timeout=-1", names=("(--set): study.timeout: must be in [0, 31536000], but got -1",)),
    case("bound/layers-1e9", *RUN, "--set", "space.dense.layers={low=1, high=1000000000}",
         names=("(--set): space.dense.layers.high: must be in [1, 64], but got 1000000000",)),
    case("bound/grid-1e19-points", *RUN, "--set", "study.sampler=grid", "--set", "space.dense.learning_rate=0.001",
         "--set", "space.dense.layers={low=1, high=4}", "--set", "space.dense.units={low=1, high=65536}",
         names=("(--set): study.sampler: the grid holds about 10^19 points", "at most 100,000")),
    case("bound/heartbeat-1e10", *RUN, "--set", "study.heartbeat_interval=10000000000",
         names=("study.heartbeat_interval: must be in [1, 3600], but got 10000000000",)),
    case("bound/max-epochs-10-400", *RUN, "--set", "objective.max_epochs=1" + "0" * 400,
         names=("objective.max_epochs: must be in [1, 1000], but got 1000000", "(401 characters)")),
    case("bound/target-nan", *RUN, "--set", "objective.target=nan", names=("objective.target: must be in (0, 1], but got nan",)),
    case("bound/max-epochs-true", *RUN, "--set", "objective.max_epochs=true", names=("objective.max_epochs: must be an integer in [1, 1000], but got True",)),
    case("bound/sampler-option-ten", *RUN, "--set", "study.sampler=tpe", "--set", 'study.sampler_options={n_startup_trials="ten"}',
         names=("study.sampler_options.n_startup_trials: TPESampler takes an integer here, but got 'ten'",)),
    case("bound/no-training-image", *RUN, "--set", "data.validation_fraction=0.9999", names=("data.validation_fraction = 0.9999 leaves no training image",)),
    case("bound/no-validation-image", *RUN, "--set", "data.validation_fraction=0.0001", names=("data.validation_fraction = 0.0001 leaves no validation image",)),
    case("bound/workers-no-training-image", *RUN, "--workers", "2", "--study-name", "new", "--set", "data.validation_fraction=0.9999",
         names=("data.validation_fraction = 0.9999 leaves no training image",)),
    case("bound/step-does-not-divide", *RUN, "--set", "space.dense.dropout={low=0, high=0.95, step=0.1}",
         names=("(--set): space.dense.dropout: step 0.1 does not divide the range from 0.0 to 0.95",)),
    # study file paths: nothing but a regular file is opened; one line naming the path
    case("path/dev-zero", "study", "/dev/zero", names=("/dev/zero: cannot read study file: it is a character device",)),
    case("path/through-a-file", "study", "$base/study.toml", names=("$base/study.toml: cannot read study file: a part of the path is a file",)),
    case("path/name-too-long", "study", "$tmp/" + "n" * 300 + ".toml", names=("cannot read study file: a name in the path is too long",)),
    case("path/empty-device", "study", "/dev/null", names=("/dev/null: cannot read study file: it is a character device",)),
]
# fmt: on
CATEGORIES = {c.id.split("/")[0] for c in CASES}


def _require(service: str) -> None:
    port = {"postgres": 5432, "mysql": 3306}[service]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    except OSError as e:
        _service_missing(f"{service} at 127.0.0.1:{port}", e)


def run_case(c: Case, world: dict, cwd: Path, *extra: str):
    ctx = dict(world["ctx"], port=str(free_port()))
    fill = lambda text: Template(text).substitute(ctx)  # noqa: E731
    argv = [fill(a) for a in (*extra, *c.argv)]
    env = cli_env(**{k: fill(v) for k, v in c.env})
    return run_cli(*argv, cwd=cwd, env=env, timeout=300), [fill(n) for n in c.needles]


def test_the_matrix_covers_every_kind_of_input() -> None:
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    assert CATEGORIES >= {"file", "set", "flag", "env", "data", "url", "resume"}


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(c: Case, world: dict, tmp_path: Path) -> None:
    if c.needs:
        _require(c.needs)
    try:
        out, needles = run_case(c, world, tmp_path)
        text = out.stdout + out.stderr
        assert out.returncode == 2, text[-3000:]
        lines = text.strip().splitlines()
        assert len(lines) == 1, text[-3000:]
        assert ": error: " in lines[0]
        for needle in needles:
            assert needle in lines[0]
        assert "Traceback" not in text
        assert SECRET not in text
        # Nothing written: the SQLite file byte for byte (no journal left either), every study and
        # trial as stored, and no file where the command ran (no default studies/hpo.db, artifacts, reports).
        assert files_of(world["store"]) == world["files"]
        assert stored(world["url"]) == world["stored"]
        assert list(tmp_path.iterdir()) == []
    finally:
        if files_of(world["store"]) != world["files"]:
            shutil.rmtree(world["store"])
            shutil.copytree(world["pristine"], world["store"])


DEBUG_CASE = next(c for c in CASES if c.id == "url/refused-port")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_and_still_hides_the_password(where: str, world: dict, tmp_path: Path) -> None:
    """``--debug`` before or after the command: the traceback, with the driver's error behind
    hpo's, then the same one line; without it, only the line."""
    debug = dataclasses.replace(DEBUG_CASE, argv=(*DEBUG_CASE.argv, "--debug")) if where == "after" else DEBUG_CASE
    out, needles = run_case(debug, world, tmp_path, *(["--debug"] if where == "before" else []))
    assert out.returncode == 2
    assert out.stderr.startswith("Traceback (most recent call last):")
    assert "psycopg2.OperationalError" in out.stderr and "hpo.errors.StorageError" in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("hpo: error: cannot open storage") and all(n in last for n in needles)
    assert SECRET not in out.stdout + out.stderr
    assert files_of(world["store"]) == world["files"]
