"""What ``study.deterministic_ops`` costs, and whether seeded trials repeat without it.

One hpo trial of a dense net on Fashion-MNIST (seed 0), run in a fresh process per repeat --
TensorFlow's op determinism cannot be switched off again in a process -- alternating the two
variants (off, on, off, on, ...) so that noise on a shared machine hits both.  Per-epoch time is
the median over the epochs after the first (the first holds tracing and XLA compilation).

    python scripts/bench_determinism.py                  # dense 1x128 (XLA), 54,000 images, 4 epochs, 3 repeats
    python scripts/bench_determinism.py --dropout 0.2    # a model with dropout (never XLA)
    python scripts/bench_determinism.py --quick          # 10,000 images, 3 epochs, 2 repeats

For each variant it prints seconds per epoch and whether every repeat gave the same loss
history to the last stored digit; the last line is a JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(args: argparse.Namespace) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))
    import optuna

    from hpo.config import parse_config
    from hpo.data import prepare
    from hpo.objective import Objective
    from hpo.study import trial_history

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    raw = {
        "study": {"seed": 0, "deterministic_ops": args.child == "on", "pruner": "none"},
        "data": {"dataset": "fashion_mnist", "train_size": args.train_size},
        "objective": {"target": 1.0, "max_epochs": args.epochs},
        "space": {"dense": {"units": args.units, "dropout": args.dropout, "batch_size": 32}},
    }
    cfg = parse_config(raw, source="bench")
    study = optuna.create_study(direction="minimize")
    study.optimize(Objective(cfg, prepare(cfg.data)), n_trials=1)
    history = trial_history(study.trials[0])
    print(
        json.dumps({"epoch_seconds": history["epoch_seconds"], "loss": history["loss"], "val_accuracy": history["val_accuracy"]})
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-size", type=int, default=0, help="training images (0: all 54,000)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--quick", action="store_true", help="10,000 images, 3 epochs, 2 repeats")
    p.add_argument("--child", choices=("off", "on"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    if args.quick:
        args.train_size, args.epochs, args.repeats = 10_000, 3, 2
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for repeat in range(args.repeats):
        for variant in ("off", "on"):
            cmd = [sys.executable, __file__, "--child", variant, "--train-size", str(args.train_size)]
            cmd += ["--epochs", str(args.epochs), "--units", str(args.units), "--dropout", str(args.dropout)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
            run = json.loads(out.stdout.strip().splitlines()[-1])
            runs[variant].append(run)
            print(
                f"repeat {repeat} deterministic_ops={variant}: " + " ".join(f"{s:.2f}" for s in run["epoch_seconds"]) + " s",
                flush=True,
            )
    result = {"train_size": args.train_size or 54_000, "epochs": args.epochs, "units": args.units, "dropout": args.dropout}
    for variant, rs in runs.items():
        per_epoch = statistics.median(s for r in rs for s in r["epoch_seconds"][1:])
        same = all(r["loss"] == rs[0]["loss"] and r["val_accuracy"] == rs[0]["val_accuracy"] for r in rs)
        result[variant] = {
            "seconds_per_epoch": round(per_epoch, 3),
            "repeats_identical": same,
            "val_accuracy": rs[0]["val_accuracy"][-1],
        }
        print(
            f"deterministic_ops={variant}: {per_epoch:.3f} s/epoch, repeats identical: {same}, final val_accuracy {rs[0]['val_accuracy'][-1]}"
        )
    result["ratio"] = round(result["on"]["seconds_per_epoch"] / result["off"]["seconds_per_epoch"], 2)
    result["same_numbers_on_and_off"] = runs["on"][0]["loss"] == runs["off"][0]["loss"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
