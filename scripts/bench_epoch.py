"""Epoch throughput: a plain tutorial-style ``model.fit`` against an hpo trial.

Both train the tutorial's network (Flatten -> Dense(128, relu) -> Dense(10, softmax), Adam
1e-3, batch 32) on the same Fashion-MNIST split for the same epochs, alternating a, b, a, b
so that noise on a shared machine hits both.  Per-epoch time is the median over epochs after
the first (the first holds graph tracing / XLA compilation, reported separately).

    python scripts/bench_epoch.py            # 54,000 images, 5 epochs, 3 repeats
    python scripts/bench_epoch.py --quick    # 20,000 images, 4 epochs, 2 repeats (< 1 minute)
    python scripts/bench_epoch.py --checks 4 # also an hpo trial with 4 target checks per epoch

The last line of output is a JSON object: {"ratio": hpo / plain seconds per epoch, ...}; with
--checks K also "checks_ratio": (hpo with K checks per epoch) / hpo seconds per epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import optuna  # noqa: E402

from hpo.config import parse_config  # noqa: E402
from hpo.data import prepare  # noqa: E402
from hpo.objective import Objective  # noqa: E402
from hpo.study import trial_history  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t)


def plain(cfg, split, epochs: int) -> tuple[list[float], float]:
    """The tutorial's way: Sequential, compile with defaults, fit."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(split.image_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    h = model.fit(
        split.x_train,
        split.y_train,
        batch_size=32,
        epochs=epochs,
        validation_data=(split.x_val, split.y_val),
        callbacks=[timer],
        verbose=0,
    )
    return timer.seconds, h.history["val_accuracy"][-1]


def hpo_trial(cfg, split, epochs: int) -> tuple[list[float], float]:
    """One trial of an hpo study with the same fixed parameters (target 1.0: never stops early)."""
    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.NopPruner())
    study.optimize(Objective(cfg, split), n_trials=1)
    history = trial_history(study.trials[0])
    seconds = history["epoch_seconds"]
    k = round(1 / history["epoch"][0]) if history.get("epoch") else 1
    if k > 1:  # seconds per check -> seconds per epoch: the sum of each epoch's checks
        seconds = [sum(seconds[i : i + k]) * (k * history["epoch"][0]) ** -1 for i in range(0, len(seconds) - k + 1, k)]
    return seconds, history["val_accuracy"][-1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20,000 images, 4 epochs, 2 repeats")
    p.add_argument("--checks", type=int, default=1, help="also time an hpo trial with this many target checks per epoch")
    p.add_argument("--epochs", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--train-size", type=int)
    a = p.parse_args()
    epochs = a.epochs or (4 if a.quick else 5)
    repeats = a.repeats or (2 if a.quick else 3)
    train_size = a.train_size if a.train_size is not None else (20000 if a.quick else 0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = parse_config(
        {
            "study": {"seed": 0, "pruner": "none"},
            "data": {"train_size": train_size},
            "objective": {"target": 1.0, "max_epochs": epochs},
            "space": {
                "dense": {
                    "layers": 1,
                    "units": 128,
                    "activation": "relu",
                    "optimizer": "adam",
                    "learning_rate": 1e-3,
                    "batch_size": 32,
                }
            },
        }
    )
    split = prepare(cfg.data)
    variants = [("plain", plain, cfg), ("hpo", hpo_trial, cfg)]
    if a.checks > 1:
        checked = dataclasses.replace(cfg, objective=dataclasses.replace(cfg.objective, checks_per_epoch=a.checks))
        variants.append((f"hpo/k{a.checks}", hpo_trial, checked))
    runs: dict[str, list] = {name: [] for name, _, _ in variants}
    for r in range(repeats):
        for name, fn, variant_cfg in variants:
            seconds, acc = fn(variant_cfg, split, epochs)
            runs[name].append((seconds, acc))
            print(
                f"repeat {r}: {name:7s} first epoch {seconds[0]:.2f} s, then {[round(s, 2) for s in seconds[1:]]} s; val_accuracy {acc:.4f}",
                flush=True,
            )

    def steady(name: str) -> float:
        return statistics.median(s for seconds, _ in runs[name] for s in seconds[1:])

    def first(name: str) -> float:
        return statistics.median(seconds[0] for seconds, _ in runs[name])

    def acc(name: str) -> float:
        return statistics.median(a for _, a in runs[name])

    result = {
        "ratio": round(steady("hpo") / steady("plain"), 3),
        "plain_epoch_s": round(steady("plain"), 3),
        "hpo_epoch_s": round(steady("hpo"), 3),
        "plain_first_epoch_s": round(first("plain"), 3),
        "hpo_first_epoch_s": round(first("hpo"), 3),
        "plain_val_accuracy": round(acc("plain"), 4),
        "hpo_val_accuracy": round(acc("hpo"), 4),
        "accuracy_diff_points": round(100 * (acc("hpo") - acc("plain")), 2),
        "train_size": len(split.x_train),
        "epochs": epochs,
        "repeats": repeats,
        "cpus": os.cpu_count(),
    }
    if a.checks > 1:
        k = f"hpo/k{a.checks}"
        result.update(
            checks=a.checks,
            checks_epoch_s=round(steady(k), 3),
            checks_ratio=round(steady(k) / steady("hpo"), 3),
            checks_val_accuracy=round(acc(k), 4),
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
