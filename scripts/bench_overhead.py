"""Overhead per trial outside training, as a share of a 3-epoch dense trial's wall time.

Runs real trials of ``python -m hpo.run study``'s objective in this process, with the
storage (SQLite file and/or PostgreSQL) and the artifact writer on, and splits each trial's
wall time (Optuna's start to complete, as stored) into

* ``train``: the epochs as Keras ran them, at the steady per-epoch speed;
* ``first-epoch extra``: what the first epoch took beyond the steady speed: graph tracing
  and, for models without dropout, XLA compilation;
* ``other``: everything else: sampling, building, compiling, storage writes (reports, user
  attributes), the learning-curve PNG, history files and the saved model.

The model is the tutorial's (one relu layer of 128, Adam 1e-3, batch 32) by default, or
trials sampled from studies/fashion_dense.toml with ``--sampled``.

    python scripts/bench_overhead.py                      # 3 trials on SQLite and PostgreSQL
    python scripts/bench_overhead.py --trials 5 --backends sqlite --sampled

The last line is a JSON object with the medians per backend.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

TUTORIAL = {
    "layers": 1,
    "units": 128,
    "activation": "relu",
    "initializer": "glorot_uniform",
    "dropout": 0.0,
    "batchnorm": False,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "batch_size": 32,
}


def measure(url: str, n_trials: int, epochs: int, sampled: bool, artifacts: Path) -> list[dict[str, float]]:

    from hpo.api import load_config
    from hpo.artifacts import ArtifactWriter, make_artifact_store
    from hpo.data import prepare
    from hpo.objective import Objective
    from hpo.storage import make_storage
    from hpo.study import open_study, trial_history

    overrides = [f"objective.max_epochs={epochs}", "objective.target=1.0"]  # never reached: all epochs run
    if not sampled:
        overrides += [f"space.dense.{k}={json.dumps(v) if isinstance(v, str) else str(v).lower()}" for k, v in TUTORIAL.items()]
    cfg = load_config(REPO / "studies" / "fashion_dense.toml", overrides)
    split = prepare(cfg.data)
    study = open_study(cfg, make_storage(url))
    objective = Objective(cfg, split, callbacks=(ArtifactWriter(make_artifact_store(str(artifacts)), cfg),))
    study.optimize(objective, n_trials=n_trials)
    rows = []
    for t in study.get_trials(deepcopy=False):
        wall = (t.datetime_complete - t.datetime_start).total_seconds()
        secs = trial_history(t)["epoch_seconds"]
        steady = statistics.median(secs[1:]) if len(secs) > 1 else secs[0]
        extra = secs[0] - steady
        other = wall - sum(secs)
        rows.append(
            {
                "wall": wall,
                "train": steady * len(secs),
                "first_extra": extra,
                "other": other,
                "other_pct": 100 * other / wall,
                "outside_training_pct": 100 * (other + extra) / wall,
                "n_params": t.user_attrs["n_params"],
            }
        )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument("--sampled", action="store_true", help="sample the main job's space instead of the tutorial's model")
    a = p.parse_args()
    import optuna
    from bench_storage import fresh_database

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = {}
    print(
        f"{'backend':<11} {'trial':>5} {'wall s':>7} {'train s':>8} {'1st-epoch extra s':>17} {'other s':>8} {'other %':>8} {'outside training %':>18}"
    )
    for backend in a.backends.split(","):
        with fresh_database(backend) as url, tempfile.TemporaryDirectory() as tmp:
            rows = measure(url, a.trials, a.epochs, a.sampled, Path(tmp))
        for i, r in enumerate(rows):
            print(
                f"{backend:<11} {i:>5} {r['wall']:>7.2f} {r['train']:>8.2f} {r['first_extra']:>17.2f} {r['other']:>8.2f} "
                f"{r['other_pct']:>8.1f} {r['outside_training_pct']:>18.1f}",
                flush=True,
            )
        result[backend] = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
    print(json.dumps({"epochs": a.epochs, "trials": a.trials, "sampled": a.sampled, "median": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
