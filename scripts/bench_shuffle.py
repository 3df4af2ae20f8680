"""How the input pipeline changes epochs-to-target: Keras' array ``fit`` against a reshuffled pipeline.

Once ``keras.utils.set_random_seed`` was called, Keras 3's array adapter on TensorFlow draws the
same permutation of the training data at every epoch of a ``fit`` (shown first, on 20 numbers).
This script trains one configuration of the search benchmark's space (the answer hpo found on the
``quickstart`` question) on the same seeds both ways and prints each run's val_accuracy per epoch
and its epochs to the target:

* ``array``: ``model.fit(x_train, y_train, batch_size=..., shuffle=True)``, as most Keras code does;
* ``pipeline``: :func:`bench_search.training_data`, a ``tf.data`` pipeline reshuffled at every
  epoch (what hpo's objective and every tool of ``scripts/bench_search.py`` train on).

    python scripts/bench_shuffle.py              # 8 seeds each way, ~5 minutes on 2 cores
    python scripts/bench_shuffle.py --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_search as bench  # noqa: E402

CONFIG = {
    "layers": 2,
    "units_l0": 679,
    "units_l1": 201,
    "activation": "gelu",
    "initializer": "glorot_uniform",
    "dropout": 0.12334952609455871,
    "batchnorm": True,
    "learning_rate": 0.00010960749558932282,
    "optimizer": "rmsprop",
    "batch_size": 32,
}


def same_permutation_every_epoch() -> list[list[int]]:
    """The first batch of three epochs of one seeded array ``fit`` (Keras' own adapter)."""
    import keras
    import numpy as np
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    keras.utils.set_random_seed(1)
    x = np.arange(20, dtype="float32").reshape(20, 1)
    dataset = ArrayDataAdapter(x, x, batch_size=5, shuffle=True).get_tf_dataset()
    return [[int(v) for v in next(iter(dataset))[0].numpy().ravel()] for _ in range(3)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8, help="training seeds per way (10000, 10001, ...)")
    p.add_argument("--epochs", type=int, default=6)
    a = p.parse_args()

    from hpo.data import prepare
    from hpo.quiet import import_tensorflow

    import_tensorflow()
    import keras

    print("first batch of epochs 1-3 of one seeded array fit:", same_permutation_every_epoch(), flush=True)
    question = bench.QUESTIONS["quickstart"]
    split = prepare(bench.hpo_config(question, 0).data)
    target = question.target
    reached: dict[str, list[int]] = {}
    for way in ("array", "pipeline"):
        for seed in range(bench.FRESH_SEED_BASE, bench.FRESH_SEED_BASE + a.seeds):
            keras.backend.clear_session()
            keras.utils.set_random_seed(seed)
            model = bench.build_model(CONFIG, split.image_shape, split.n_classes)
            bench.compile_plain(model, CONFIG, steps_per_execution=32)
            data = (
                {"x": split.x_train, "y": split.y_train, "batch_size": CONFIG["batch_size"], "shuffle": True}
                if way == "array"
                else {"x": bench.training_data(split, CONFIG["batch_size"], seed), "shuffle": False}
            )
            history = model.fit(
                **data, epochs=a.epochs, validation_data=(split.x_val, split.y_val), validation_batch_size=1024, verbose=0
            )
            acc = [round(v, 4) for v in history.history[bench.MONITOR]]
            hit = next((i + 1 for i, v in enumerate(acc) if v >= target), a.epochs + 1)
            reached.setdefault(way, []).append(hit)
            print(f"{way:8} seed {seed}: {bench.MONITOR} {acc}; epochs to {target}: {hit}", flush=True)
    for way, hits in reached.items():
        print(f"{way:8} epochs to {target}: {hits}, median {statistics.median(hits):g}, mean {statistics.mean(hits):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
