"""XLA per trial: wall seconds of whole dense trials with ``jit_compile`` on and off.

XLA compiles every new architecture in its first epoch and then trains faster; most trials
stop after one or two epochs (successive halving), so what counts is the whole trial: build,
compile and fit with validation, as ``hpo.objective.Objective`` runs it (``clear_session``
first, 32 steps per execution, the tf.data pipeline of ``Schedule.fit_args``).

Each run trains a fresh model for ``--epochs`` epochs; the time from the build to the end of
epoch k (plus the end of ``fit``) is what a trial stopped after k epochs would have cost, so one
5-epoch run gives the trial time after 1 to 5 epochs.  Every (configuration, repeat) runs XLA
on and off back to back, in alternating order, with the same seed; one untimed warm-up run per
mode first pays what a worker pays once per process.  Default TensorFlow threading.

When the training set is not a multiple of the batch size, XLA compiles the training step
twice in the first epoch (whole batches and the last, partial one), as it does the validation
step (6,000 = 5 x 1,024 + 880).  ``--drop-remainder`` cuts the training set to whole batches
(not what the objective does) to show what the second compilation costs.

    python scripts/bench_xla.py            # 54,000 images, 5 epochs, 3 repeats (~15 minutes)
    python scripts/bench_xla.py --quick    # 12,000 images, 3 epochs, 1 repeat
    python scripts/bench_xla.py --configs small,bn2 --drop-remainder

The last line of output is a JSON object: per configuration the runs (per-epoch seconds,
cumulative trial seconds, val_accuracy, load average), the medians and ``break_even_epochs``:
the smallest k at which XLA's trial is faster than the one without XLA (null if none within
the epochs run); ``break_even_projected`` extends the search to ``objective.max_epochs`` at the
steady epoch speeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpo.quiet import import_tensorflow  # noqa: E402

import_tensorflow()

import keras  # noqa: E402

from hpo import models  # noqa: E402
from hpo.api import load_config  # noqa: E402
from hpo.data import Split, prepare  # noqa: E402
from hpo.objective import Schedule, _Tensors  # noqa: E402
from hpo.space import Params  # noqa: E402

# Points of studies/fashion_dense.toml's space (Adam 1e-3, glorot_uniform throughout).
CONFIGS = {
    "small": {"units": (128,), "activation": "relu", "batchnorm": False, "dropout": 0.0, "batch_size": 64},
    "bn2": {"units": (178, 557), "activation": "relu", "batchnorm": True, "dropout": 0.0, "batch_size": 64},
    "wide": {"units": (1024, 1024, 1024), "activation": "relu", "batchnorm": False, "dropout": 0.0, "batch_size": 32},
    "mid": {"units": (512, 512), "activation": "relu", "batchnorm": False, "dropout": 0.0, "batch_size": 32},
    "bn256": {"units": (380, 257), "activation": "gelu", "batchnorm": True, "dropout": 0.0, "batch_size": 256},
    "dropout": {"units": (128,), "activation": "relu", "batchnorm": False, "dropout": 0.1, "batch_size": 64},
}


def describe(spec: dict) -> str:
    units = "/".join(map(str, spec["units"]))
    extras = [spec["activation"]] + ["bn"] * spec["batchnorm"] + [f"drop{spec['dropout']}"] * (spec["dropout"] > 0)
    return f"{units} {' '.join(extras)} b{spec['batch_size']}"


def to_params(spec: dict) -> Params:
    arch = {k: spec[k] for k in ("units", "activation", "batchnorm", "dropout")}
    arch["initializer"] = "glorot_uniform"
    return Params(family="dense", arch=arch, learning_rate=1e-3, optimizer="adam", batch_size=spec["batch_size"])


class TrialClock(keras.callbacks.Callback):
    """Epoch start and end times, relative to ``t0`` (just before the model is built)."""

    def __init__(self, t0: float):
        super().__init__()
        self.t0 = t0

    def on_train_begin(self, logs=None):
        self.begins, self.ends, self.val_accuracy = [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.begins.append(time.perf_counter() - self.t0)

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter() - self.t0)
        self.val_accuracy.append(float(logs["val_accuracy"]))


def whole_batches(split: Split, batch_size: int) -> Split:
    """The split with the training set cut to a multiple of ``batch_size``: no partial batch."""
    n = len(split.x_train) - len(split.x_train) % batch_size
    return dataclasses.replace(split, x_train=split.x_train[:n], y_train=split.y_train[:n])


def run_trial(split: Split, params: Params, jit: bool, epochs: int, seed: int) -> dict:
    """One trial as the objective trains it; times from the build on."""
    keras.backend.clear_session()  # and gc.collect()
    _Tensors.of(split)  # made once per process in a study, so not timed
    keras.utils.set_random_seed(seed)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    schedule = Schedule(len(split.x_train), params.batch_size, epochs, checks_per_epoch=1)
    model = models.build(params, split.image_shape, split.n_classes)
    models.compile_model(model, params, jit_compile=jit, steps_per_execution=schedule.steps_per_execution)
    clock = TrialClock(t0)
    model.fit(**schedule.fit_args(split, params.batch_size, seed), callbacks=[clock], verbose=0)
    total = time.perf_counter() - t0
    tail = total - clock.ends[-1]  # fit's end after the last epoch: paid once by any trial
    return {
        "jit": jit,
        "xla_used": bool(model.jit_compile),
        "seed": seed,
        "setup_s": round(clock.begins[0], 3),
        "epoch_s": [round(e - b, 3) for b, e in zip(clock.begins, clock.ends, strict=True)],
        "cumulative_s": [round(e + tail, 3) for e in clock.ends],
        "val_accuracy": [round(v, 4) for v in clock.val_accuracy],
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def summarise(runs: list[dict], epochs: int) -> dict:
    """Medians over repeats; steady epochs are all but the first."""
    steady = [s for r in runs for s in r["epoch_s"][1:]]
    return {
        "setup_s": round(statistics.median(r["setup_s"] for r in runs), 3),
        "epoch_s": [round(statistics.median(r["epoch_s"][k] for r in runs), 3) for k in range(epochs)],
        "steady_epoch_s": round(statistics.median(steady), 3) if steady else None,
        "cumulative_s": [round(statistics.median(r["cumulative_s"][k] for r in runs), 3) for k in range(epochs)],
        "val_accuracy": round(statistics.median(r["val_accuracy"][-1] for r in runs), 4),
    }


def break_even(xla: dict, plain: dict, up_to: int) -> tuple[int | None, int | None]:
    """Smallest epoch count at which the XLA trial is faster: measured, and projected to ``up_to``
    epochs at the steady speeds."""
    measured = next(
        (k + 1 for k, (a, b) in enumerate(zip(xla["cumulative_s"], plain["cumulative_s"], strict=True)) if a < b), None
    )
    if measured is not None or xla["steady_epoch_s"] is None:
        return measured, measured
    n = len(xla["cumulative_s"])
    for k in range(n + 1, up_to + 1):
        a = xla["cumulative_s"][-1] + (k - n) * xla["steady_epoch_s"]
        b = plain["cumulative_s"][-1] + (k - n) * plain["steady_epoch_s"]
        if a < b:
            return None, k
    return None, None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="12,000 images, 3 epochs, 1 repeat")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    p.add_argument("--epochs", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--train-size", type=int)
    p.add_argument("--drop-remainder", action="store_true", help="train on whole batches only (unlike the objective)")
    a = p.parse_args()
    names = [n.strip() for n in a.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        p.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    epochs = a.epochs or (3 if a.quick else 5)
    repeats = a.repeats or (1 if a.quick else 3)
    train_size = a.train_size if a.train_size is not None else (12000 if a.quick else 0)
    cfg = load_config(REPO / "studies" / "fashion_dense.toml", [f"data.train_size={train_size}"])
    split = prepare(cfg.data)
    gc.freeze()  # as the objective does: data and modules stay out of every later collection
    print(f"{len(split.x_train)} train / {len(split.x_val)} validation images, {epochs} epochs, {repeats} repeats", flush=True)

    started = time.perf_counter()
    splits = {
        name: whole_batches(split, CONFIGS[name]["batch_size"]) if a.drop_remainder else split for name in ["small", *names]
    }
    for jit in (True, False):  # once per process: TF runtime, XLA's compiler, tf.data threads
        run_trial(splits["small"], to_params(CONFIGS["small"]), jit, 1, seed=0)
    print(f"warm-up {time.perf_counter() - started:.1f} s", flush=True)

    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(repeats):
        for i, name in enumerate(names):
            for jit in (True, False) if (r + i) % 2 == 0 else (False, True):
                run = run_trial(splits[name], to_params(CONFIGS[name]), jit, epochs, seed=r)
                runs[name].append(run)
                print(
                    f"repeat {r} {name:8s} jit={'on ' if jit else 'off'}(used {run['xla_used']!s:5s}) "
                    f"setup {run['setup_s']:.2f} s, epochs {run['epoch_s']} s, val_accuracy {run['val_accuracy']}, "
                    f"load {run['load'][0]:.2f}->{run['load'][1]:.2f}",
                    flush=True,
                )

    result: dict = {
        "train_size": len(split.x_train),
        "val_size": len(split.x_val),
        "epochs": epochs,
        "repeats": repeats,
        "drop_remainder": a.drop_remainder,
        "cpus": os.cpu_count(),
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "cumulative": "one run per (config, jit, repeat); trial s after k epochs = build to end of epoch k + fit's tail",
        "configs": {},
    }
    ks = " ".join(f"{f'after {k}':>8s}" for k in range(1, epochs + 1))
    print(f"\n{'config':30s} {'jit':3s} {'setup':>6s} {'first':>6s} {'steady':>6s} {ks}  {'val_acc':>7s}  load")
    for name in names:
        entry: dict = {"describe": describe(CONFIGS[name])}
        for jit in (True, False):
            mine = [r for r in runs[name] if r["jit"] == jit]
            s = summarise(mine, epochs)
            loads = [x for r in mine for x in r["load"]]
            s["load"] = [min(loads), max(loads)]
            entry["xla" if jit else "no_xla"] = {**s, "runs": mine}
            steady = f"{s['steady_epoch_s']:6.2f}" if s["steady_epoch_s"] is not None else f"{'-':>6s}"
            cum = " ".join(f"{c:8.2f}" for c in s["cumulative_s"])
            print(
                f"{entry['describe']:30s} {'on' if jit else 'off':3s} {s['setup_s']:6.2f} {s['epoch_s'][0]:6.2f} {steady} {cum}  "
                f"{s['val_accuracy']:7.4f}  {s['load'][0]:.2f}-{s['load'][1]:.2f}"
            )
        measured, projected = break_even(entry["xla"], entry["no_xla"], cfg.objective.max_epochs)
        entry["break_even_epochs"] = measured
        entry["break_even_projected"] = projected
        entry["xla_saving_s"] = [
            round(b - a, 3) for a, b in zip(entry["xla"]["cumulative_s"], entry["no_xla"]["cumulative_s"], strict=True)
        ]
        result["configs"][name] = entry
    print("\nbreak-even epochs (XLA trial faster from k epochs on; projected to max_epochs at steady speeds):")
    for name, entry in result["configs"].items():
        print(f"  {name:8s} measured {entry['break_even_epochs']}, projected {entry['break_even_projected']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
