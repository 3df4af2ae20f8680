"""Seconds per epoch of one point of a study's space, trained the way a trial trains it.

    python scripts/bench_point.py studies/fashion_inception.toml [--point largest|smallest]
        [--epochs 3] [--set KEY=VALUE ...]

Every searched key is set to the largest (or smallest) value its range or list allows;
categorical strings take their first choice.  Prints the parameter count, the first epoch
(which includes graph/XLA compilation) and the mean of the later epochs, each split into
training and validation time.  Timing numbers live here, never in the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def point(cfg, which: str) -> dict:
    """Optuna parameters of the largest (or smallest) point of the study's space."""
    from optuna.distributions import CategoricalDistribution

    from hpo.space import distributions

    pick = max if which == "largest" else min
    params = {}
    for name, dist in distributions(cfg).items():
        if isinstance(dist, CategoricalDistribution):
            values = dist.choices
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            params[name] = pick(values) if numeric else values[0]
        else:
            params[name] = pick(dist.low, dist.high)
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_file")
    parser.add_argument("--point", choices=("largest", "smallest"), default="largest")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    import keras
    import optuna

    from hpo import models
    from hpo.api import load_config
    from hpo.data import prepare
    from hpo.objective import EVAL_BATCH
    from hpo.space import sample

    cfg = load_config(args.study_file, args.overrides)
    split = prepare(cfg.data)
    params = sample(optuna.trial.FixedTrial(point(cfg, args.point)), cfg)
    keras.utils.set_random_seed(0)
    model = models.compile_model(models.build(params, split.image_shape, split.n_classes), params)
    print(f"{args.study_file} ({args.point} point): {params.as_dict()}")
    print(f"n_params {model.count_params()}; {len(split.x_train)} train / {len(split.x_val)} validation images")
    fits, evals, cpus = [], [], []
    for epoch in range(args.epochs):
        t, c = time.perf_counter(), time.process_time()
        history = model.fit(split.x_train, split.y_train, batch_size=params.batch_size, epochs=1, verbose=0)
        fits.append(time.perf_counter() - t)
        t = time.perf_counter()
        _, acc = model.evaluate(split.x_val, split.y_val, batch_size=EVAL_BATCH, verbose=0)
        evals.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        print(
            f"epoch {epoch + 1}: train {fits[-1]:.1f} s, validation {evals[-1]:.1f} s (CPU {cpus[-1]:.1f} s); "
            f"accuracy {history.history['accuracy'][-1]:.4f}, val_accuracy {acc:.4f}",
            flush=True,
        )
    if args.epochs > 1:
        fit, ev, cpu = statistics.mean(fits[1:]), statistics.mean(evals[1:]), statistics.mean(cpus[1:])
        per_image = 1000 * fit / len(split.x_train)
        print(
            f"steady state: {fit + ev:.1f} s/epoch wall (train {fit:.1f} s = {per_image:.2f} ms/image, "
            f"validation {ev:.1f} s), {cpu:.1f} CPU s/epoch; load average {os.getloadavg()[0]:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
