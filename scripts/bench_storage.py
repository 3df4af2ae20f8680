"""Benchmark of shared-study storage: milliseconds of storage work per trial, and trials per hour.

Part 1, storage time per trial: a study whose objective does every storage call a real hpo
trial does (sampling the space of studies/tiny.toml, one report per epoch, the user attributes,
the per-epoch history) but trains nothing, through :func:`hpo.storage.make_storage`
(heartbeat on, as in a real run).  The time per trial is all storage and Optuna overhead.

Part 2, trials per hour: ``python -m hpo.run study studies/tiny.toml`` with ``--workers 1`` and
``--workers 2`` on a fresh database, real training; throughput is counted from the first trial's
start to the last trial's end (process start-up excluded) and from the command's wall time.

    python scripts/bench_storage.py                       # both parts, every backend reachable
    python scripts/bench_storage.py --trials 100 --skip-throughput
    python scripts/bench_storage.py --throughput-trials 8 --throughput-storage sqlite
    python scripts/bench_storage.py --scale 1000,10000 --backends sqlite,postgresql

Part 3 (``--scale``), studies at scale: one study grown to each size with realistic finished
trials, then a new worker joins it and runs ``--scale-sample`` storage-only trials (median
pruner on, which reads the study at every report): the seconds to open the study, the first
and the median ms per trial; then ``python -m hpo.run report`` on the study, timed.

Servers: PostgreSQL and MariaDB admin URLs from HPO_TEST_POSTGRES / HPO_TEST_MYSQL (default the
local servers); a fresh database is created and dropped for each measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna  # noqa: E402

from hpo.api import load_config  # noqa: E402
from hpo.storage import make_storage  # noqa: E402
from hpo.study import HISTORY_ATTR, open_study, store_history  # noqa: E402

PG_ADMIN = os.environ.get("HPO_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN = os.environ.get("HPO_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
TINY = REPO / "studies" / "tiny.toml"


@contextlib.contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """A storage URL on a new, empty database (a temporary file for SQLite)."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite:///{d}/bench.db"
        return
    import sqlalchemy

    admin_url = PG_ADMIN if backend == "postgresql" else MYSQL_ADMIN
    name = f"hpo_bench_{uuid.uuid4().hex[:8]}"
    quote = '"' if backend == "postgresql" else "`"
    options = {"isolation_level": "AUTOCOMMIT"} if backend == "postgresql" else {}
    admin = sqlalchemy.create_engine(admin_url, connect_args={"connect_timeout": 5}, **options)
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"CREATE DATABASE {quote}{name}{quote}"))
        c.commit()
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            force = " WITH (FORCE)" if backend == "postgresql" else ""
            c.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{force}"))
            c.commit()
        admin.dispose()


def storage_ms_per_trial(url: str, n_trials: int, overrides: tuple[str, ...] = ()) -> list[float]:
    """Per-trial seconds (as ms) of a trial that does a real trial's storage calls, no training."""
    from hpo import space

    cfg = load_config(TINY, overrides)
    epochs = cfg.objective.max_epochs
    study = open_study(cfg, make_storage(url))

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("family", "dense")
        params = space.sample(trial, cfg)
        trial.set_user_attr("fixed_params", dict(params.fixed))
        history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
        for epoch in range(epochs):
            for values in history.values():
                values.append(0.5)
            trial.report(epochs + 1.5 - 0.1 * epoch, step=epoch)
            trial.should_prune()
        attrs = {
            "epochs_to_target": None,
            "reached_target": False,
            "stop_reason": "max_epochs",
            "n_params": 25450,
            "seconds": 1.0,
            "seconds_per_epoch": 0.5,
            "epochs": epochs,
            "best_val_accuracy": 0.5,
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        store_history(trial, history)
        return epochs + 1.4

    times: list[float] = []
    last = [time.perf_counter()]

    def tick(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        now = time.perf_counter()
        times.append((now - last[0]) * 1000)
        last[0] = now

    study.optimize(objective, n_trials=n_trials, callbacks=[tick])
    return times


def throughput(url: str, workers: int, n_trials: int) -> dict[str, float]:
    env = dict(os.environ, HPO_STORAGE=url, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "hpo.run", "study", str(TINY), "--n-trials", str(n_trials), "--no-progress", "--no-artifacts"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    started = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"study with {workers} workers failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials = optuna.load_study(study_name="tiny", storage=url).trials
    done = [t for t in trials if t.state.is_finished()]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {
        "trials": len(done),
        "wall_s": wall,
        "span_s": span,
        "per_hour": 3600 * len(done) / span,
        "per_hour_wall": 3600 * len(done) / wall,
    }


SCALE_OVERRIDES = ('study.pruner="median"',)  # the default pruner reads the study at every report


def fill(url: str, n: int, seed: int = 0) -> float:
    """Add finished trials to the study until it holds ``n``; returns the seconds it took.

    Each added trial looks like a real one: sampled parameters, a value, one intermediate value
    per epoch, the user attributes, the per-epoch history; a quarter of them PRUNED.
    """
    import random

    from hpo import space

    cfg = load_config(TINY, SCALE_OVERRIDES)
    study = open_study(cfg, make_storage(url))
    dists = space.distributions(cfg)
    rng = random.Random(seed)
    have = len(study.get_trials(deepcopy=False))
    epochs = cfg.objective.max_epochs
    started = time.perf_counter()
    batch = []
    for i in range(have, n):
        params = {}
        for name, d in dists.items():
            if isinstance(d, optuna.distributions.CategoricalDistribution):
                params[name] = rng.choice(d.choices)
            else:
                params[name] = d.low + (d.high - d.low) * rng.random()
        curve = [epochs + 1.5 - 0.3 * rng.random() * (e + 1) for e in range(epochs)]
        pruned = rng.random() < 0.25
        acc = [round(0.5 + 0.4 * rng.random(), 4) for _ in range(epochs)]
        history = {"loss": acc, "accuracy": acc, "val_loss": acc, "val_accuracy": acc, "epoch_seconds": acc}
        attrs = {
            "family": "dense",
            "fixed_params": {},
            "epochs_to_target": None,
            "reached_target": False,
            "stop_reason": "pruned" if pruned else "max_epochs",
            "n_params": 25450,
            "seconds": 1.0,
            "seconds_per_epoch": 0.5,
            "epochs": epochs,
            "best_val_accuracy": max(acc),
        }
        batch.append(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE,
                params=params,
                distributions=dists,
                value=curve[-1],
                intermediate_values=dict(enumerate(curve)),
                user_attrs=attrs,
                system_attrs={HISTORY_ATTR: history},
            )
        )
        if len(batch) == 500 or i == n - 1:
            study.add_trials(batch)
            batch = []
    return time.perf_counter() - started


def scale_worker(url: str, n_trials: int) -> dict[str, float]:
    """A new worker joining a big study: seconds to open it, then ms per trial (storage calls only)."""
    started = time.perf_counter()
    open_study(load_config(TINY, SCALE_OVERRIDES), make_storage(url)).get_trials(deepcopy=False)
    opened = time.perf_counter() - started
    ms = storage_ms_per_trial(url, n_trials, SCALE_OVERRIDES)
    return {
        "open_s": opened,
        "first_ms": ms[0],
        "median_ms": statistics.median(ms[1:]),
        "p90_ms": statistics.quantiles(ms[1:], n=10)[-1],
    }


def timed_report(url: str) -> tuple[float, str]:
    """Wall seconds of ``python -m hpo.run report`` on the study, and its last output line."""
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, HPO_STORAGE=url, PYTHONPATH=str(REPO))
        argv = [sys.executable, "-m", "hpo.run", "report", "tiny", "--out", out, "--artifact-dir", out + "/none"]
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"report failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return wall, done.stdout.strip().splitlines()[-1]


def scale(backend: str, sizes: list[int], sample: int) -> None:
    """Time per trial and the report's wall time at each study size, one study growing."""
    print(f"\n{backend}: a study grown to {', '.join(map(str, sizes))} trials; at each size a new worker runs {sample} more")
    print(f"{'trials':>7} {'fill s':>7} {'open s':>7} {'1st ms':>7} {'median ms':>9} {'p90 ms':>7} {'report s':>8}")
    with fresh_database(backend) as url:
        for size in sizes:
            filled = fill(url, size - sample)
            out = subprocess.run(
                [sys.executable, __file__, "--scale-worker", url, str(sample)], capture_output=True, text=True, cwd=REPO
            )
            if out.returncode != 0:
                raise SystemExit(f"scale worker failed: {out.stderr.strip()[-500:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            report_s, _ = timed_report(url)
            print(
                f"{size:>7} {filled:>7.1f} {r['open_s']:>7.2f} {r['first_ms']:>7.0f} {r['median_ms']:>9.1f} {r['p90_ms']:>7.1f} {report_s:>8.1f}",
                flush=True,
            )


def sqlite_stress(workers: int, n_trials: int) -> str:
    """``workers`` processes x ``n_trials`` storage-only trials on one SQLite file at once."""
    with fresh_database("sqlite") as url:
        open_study(load_config(TINY), make_storage(url))
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--stress-worker", url, str(n_trials)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(workers)
        ]
        outs = [p.communicate()[0] for p in procs]
        wall = time.perf_counter() - started
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trials = optuna.load_study(study_name="tiny", storage=url).trials
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    locked = sum(o.count("database is locked") for o in outs)
    failed = sum(p.returncode != 0 for p in procs)
    return (
        f"{complete}/{workers * n_trials} trials COMPLETE, {failed} of {workers} processes failed, "
        f"{locked} 'database is locked' errors, {wall:.0f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60, help="trials per backend for the storage timing (default 60)")
    parser.add_argument("--backends", default="sqlite,postgresql,mysql", help="comma-separated: sqlite,postgresql,mysql")
    parser.add_argument("--skip-throughput", action="store_true", help="only the storage timing")
    parser.add_argument("--throughput-trials", type=int, default=8, help="trials per throughput run (default 8)")
    parser.add_argument("--throughput-storage", default="postgresql", help="backend for the throughput runs (default postgresql)")
    parser.add_argument("--sqlite-stress", metavar="WxN", help="also run W processes x N storage-only trials on one SQLite file")
    parser.add_argument("--stress-worker", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--scale",
        metavar="SIZES",
        help="only the study-size part: comma-separated sizes, e.g. 1000,10000 (per backend in --backends)",
    )
    parser.add_argument("--scale-sample", type=int, default=100, help="trials a new worker runs at each size (default 100)")
    parser.add_argument("--scale-worker", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.stress_worker:  # one process of --sqlite-stress
        storage_ms_per_trial(args.stress_worker[0], int(args.stress_worker[1]))
        return 0
    if args.scale_worker:  # one new worker of --scale
        print(json.dumps(scale_worker(args.scale_worker[0], int(args.scale_worker[1]))))
        return 0
    if args.scale:
        for backend in args.backends.split(","):
            scale(backend, [int(n) for n in args.scale.split(",")], args.scale_sample)
        return 0

    print(f"storage time per trial, studies/tiny.toml storage calls, no training, {args.trials} trials, first 5 dropped")
    print(f"{'backend':<11} {'median ms':>9} {'mean ms':>8} {'p90 ms':>7}")
    for backend in args.backends.split(","):
        try:
            with fresh_database(backend) as url:
                ms = storage_ms_per_trial(url, args.trials)[5:]
        except Exception as e:  # noqa: BLE001 - a server that is down is reported, not fatal
            print(f"{backend:<11} unavailable: {str(e).splitlines()[0][:100]}")
            continue
        p90 = statistics.quantiles(ms, n=10)[-1]
        print(f"{backend:<11} {statistics.median(ms):>9.1f} {statistics.fmean(ms):>8.1f} {p90:>7.1f}")

    if args.sqlite_stress:
        workers, n = (int(x) for x in args.sqlite_stress.lower().split("x"))
        print(f"\nSQLite, {workers} processes x {n} storage-only trials on one file: {sqlite_stress(workers, n)}")

    if not args.skip_throughput:
        n = args.throughput_trials
        print(f"\ntrials per hour, studies/tiny.toml ({args.throughput_storage}, {n} trials, {os.cpu_count()} CPUs)")
        print(f"{'workers':>7} {'trials':>6} {'span s':>7} {'wall s':>7} {'trials/h (span)':>16} {'trials/h (wall)':>16}")
        for workers in (1, 2):
            with fresh_database(args.throughput_storage) as url:
                r = throughput(url, workers, n)
            print(
                f"{workers:>7} {r['trials']:>6} {r['span_s']:>7.1f} {r['wall_s']:>7.1f} {r['per_hour']:>16.0f} {r['per_hour_wall']:>16.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
