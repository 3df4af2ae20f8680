"""Model builders: :class:`hpo.space.Params` -> compiled ``keras.Model``.

Only this package knows Keras layers.  Each family registers a builder in :data:`BUILDERS`; the
custom family's builder calls the user's function (:mod:`hpo.models.custom`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras

from hpo.models.custom import build_custom
from hpo.models.dense import build_dense, count_dense_params
from hpo.models.inception import build_inception, count_inception_params
from hpo.space import Params

__all__ = [
    "BUILDERS",
    "COUNTERS",
    "build",
    "count_params",
    "measure",
    "compile_model",
    "load_model",
    "make_optimizer",
    "save_model",
    "STEPS_PER_EXECUTION",
    "XLA_MIN_PARAM_STEPS",
    "use_xla",
]

BUILDERS: dict[str, Callable[[Params, tuple[int, ...], int], keras.Model]] = {
    "dense": build_dense,
    "inception": build_inception,
    "custom": build_custom,
}
# Parameter count of the model a builder would make, computed without allocating a weight (so
# that a too-large model is refused before it can exhaust memory).  Keras 3 creates a layer's
# weights as soon as it is called on a symbolic input, so an unbuilt model cannot be counted
# by Keras itself; tests check each formula against ``model.count_params()``.  The custom family
# has no formula: its model is built to be counted (:func:`measure`).
COUNTERS: dict[str, Callable[[Params, tuple[int, ...], int], int]] = {
    "dense": count_dense_params,
    "inception": count_inception_params,
}

# Measured on a 2-core CPU (docs/PERFORMANCE.md): 32 steps per execution with XLA trains the
# tutorial's dense net ~3x faster per epoch than a plain fit, to the same accuracy.  XLA's
# random numbers on the CPU make Dropout ~7x slower per epoch, so a model with dropout runs
# without XLA (still 32 steps per execution).
STEPS_PER_EXECUTION = 32


def _has_dropout(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, keras.layers.Dropout):
        return True
    return any(_has_dropout(sub) for sub in getattr(layer, "layers", ()) or ())


def build(params: Params, input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """Build (not compile) the model of one trial."""
    return BUILDERS[params.family](params, tuple(input_shape), n_classes)


def measure(params: Params, input_shape: tuple[int, ...], n_classes: int) -> tuple[keras.Model | None, int]:
    """``(model, n_params)``: the parameter count of the trial's model (trainable and not), and
    the model itself when counting needed building it (a family without a formula in
    :data:`COUNTERS`, the custom one), else None -- so that it is not built twice."""
    counter = COUNTERS.get(params.family)
    if counter is not None:
        return None, counter(params, tuple(input_shape), n_classes)
    model = build(params, input_shape, n_classes)
    return model, model.count_params()


def count_params(params: Params, input_shape: tuple[int, ...], n_classes: int) -> int:
    """``build(params, ...).count_params()`` (trainable and not); without building the model
    where the family has a formula."""
    return measure(params, input_shape, n_classes)[1]


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    return keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}})


# XLA compiles each new model in its first epoch (2-8 s here) and then trains dense nets faster;
# it pays back within two epochs only when an epoch is long: measured on 54,000 images
# (docs/PERFORMANCE.md, scripts/bench_xla.py), a dense net gains from XLA within 2 epochs at
# >= 2e8 parameter-steps per epoch (parameters x batches per pass) and loses below 1e8.
XLA_MIN_PARAM_STEPS = 200_000_000


def use_xla(model: keras.Model, params: Params, steps_per_epoch: int | None = None) -> bool:
    """Whether to compile ``model`` with XLA: never with dropout (XLA's CPU random numbers are
    slow); for dense nets only when ``parameters x steps_per_epoch`` reaches
    :data:`XLA_MIN_PARAM_STEPS` (when ``steps_per_epoch`` is given); other families (the custom
    one included) always."""
    if _has_dropout(model):
        return False
    if params.family == "dense" and steps_per_epoch is not None:
        return model.count_params() * steps_per_epoch >= XLA_MIN_PARAM_STEPS
    return True


def compile_model(
    model: keras.Model,
    params: Params,
    *,
    jit_compile: bool | None = None,
    steps_per_execution: int = STEPS_PER_EXECUTION,
    steps_per_epoch: int | None = None,
) -> keras.Model:
    """Compile for training; ``jit_compile=None`` chooses with :func:`use_xla`."""
    if jit_compile is None:
        jit_compile = use_xla(model, params, steps_per_epoch)
    model.compile(
        optimizer=make_optimizer(params.optimizer, params.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Save a model (architecture, weights, optimizer state) as one ``.keras`` file."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"a model file must end in .keras, but got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def load_model(path: str | Path, *, compile: bool = True) -> keras.Model:
    """Load a ``.keras`` file saved by :func:`save_model`.

    Importing this package registers the Inception blocks (``hpo>ConvBlock``, ...), so Keras
    finds them; no ``custom_objects`` are needed.
    """
    return keras.saving.load_model(Path(path), compile=compile)
