"""The custom family: the user's own builder, ``model.builder = "package.module:function"``.

The function is called as ``builder(params, input_shape, n_classes)``: ``params`` a plain dict of
the trial's ``[space.custom]`` values (the training keys ``optimizer``, ``learning_rate`` and
``batch_size`` are not in it), ``input_shape`` one example's shape (``(28, 28, 1)``),
``n_classes`` the number of classes.  It returns an uncompiled ``keras.Model`` whose one output
is ``n_classes`` probabilities (a softmax); hpo compiles and trains it as any family's model.

The module is imported from the working folder (the current directory) or the installed
packages.  :func:`check_builder` imports it and builds one model on the real data's shape before
anything is stored, so that each way a builder can be wrong is one line naming ``model.builder``.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from hpo.errors import HpoError

__all__ = ["BuilderProblem", "build_custom", "check_builder", "load_builder", "output_problem"]

SOFTMAX_TOLERANCE = 1e-2  # a softmax's outputs sum to 1 within this (float16 included)


class BuilderProblem(HpoError):
    """``model.builder`` cannot be imported, or what it builds cannot be trained."""


def _first_line(e: BaseException) -> str:
    line = (str(e).strip().splitlines() or [""])[0][:300]
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def _working_folder_importable() -> None:
    """The current directory on ``sys.path`` (first), as ``python -m`` has it and the ``hpo``
    script does not."""
    cwd = os.getcwd()
    if not any(os.path.abspath(p or os.curdir) == cwd for p in sys.path):
        sys.path.insert(0, cwd)


def load_builder(spec: str) -> Callable[..., Any]:
    """The function ``"package.module:function"`` names; a :class:`BuilderProblem` saying why not."""
    module_name, _, attr = spec.partition(":")
    _working_folder_importable()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise BuilderProblem(
                f"no module named {missing!r} (looked in the working folder {os.getcwd()!r} and the installed packages)"
            ) from None
        raise BuilderProblem(f"importing module {module_name!r} raised {_first_line(e)}") from None
    except (Exception, SystemExit) as e:
        raise BuilderProblem(f"importing module {module_name!r} raised {_first_line(e)}") from None
    found: Any = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(found, part):
            where = ".".join([module_name, *attr.split(".")[:i]])
            raise BuilderProblem(f"{where} has no attribute {part!r} (module file {getattr(module, '__file__', None)!r})")
        found = getattr(found, part)
    if not callable(found):
        raise BuilderProblem(f"{module_name}.{attr} is {type(found).__name__} {_short(found)}, not a function")
    return found


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def output_problem(model: Any, input_shape: tuple[int, ...], n_classes: int) -> str | None:
    """Why hpo cannot train ``model`` on examples of ``input_shape`` with ``n_classes`` classes
    (None: it can).  Calls the model on one example of zeros, which also builds an unbuilt one."""
    if not isinstance(model, keras.Model):
        return f"returned {type(model).__name__} {_short(model)}, not a keras.Model"
    try:
        out = model(np.zeros((1, *input_shape), np.float32), training=False)
    except Exception as e:  # noqa: BLE001 - the user's model
        return f"built a model that cannot take one example of shape {tuple(input_shape)}: {_first_line(e)}"
    if isinstance(out, (list, tuple, dict)):
        return f"built a model with {len(out)} outputs; hpo trains models with one output of {n_classes} classes"
    shape = tuple(out.shape)
    if shape != (1, n_classes):
        units = shape[-1] if len(shape) == 2 else f"shape {shape[1:]}"
        return f"built a model whose output has {units} units, but the data has {n_classes} classes: end it in Dense({n_classes}, activation='softmax')"
    values = np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float64)
    if not np.all(np.isfinite(values)) or values.min() < 0 or abs(values.sum() - 1) > SOFTMAX_TOLERANCE:
        return (
            "built a model whose output is not class probabilities (the loss is sparse categorical cross-entropy): "
            "end it in a softmax"
        )
    return None


def build_custom(params: Any, input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """One trial's model: ``builder(dict(params.arch), input_shape, n_classes)``, checked."""
    if params.builder is None:
        raise HpoError("model.builder: the custom family needs a builder")
    try:
        builder = load_builder(params.builder)
    except BuilderProblem as e:
        raise BuilderProblem(f"model.builder: {params.builder!r}: {e}") from None
    model = builder(dict(params.arch), tuple(input_shape), n_classes)
    problem = output_problem(model, tuple(input_shape), n_classes)
    if problem is not None:
        raise ValueError(f"model.builder {params.builder!r} {problem}")
    return model


def check_builder(cfg: Any, input_shape: tuple[int, ...], n_classes: int) -> None:
    """Import ``cfg.model.builder`` and build one model with each ``[space.custom]`` key at its
    first value on the data's ``input_shape``; a :class:`~hpo.errors.ConfigError` naming
    ``model.builder`` when that fails.  Nothing is stored before it passes."""
    from hpo.space import probe_params

    spec = cfg.model.builder

    def refuse(problem: str) -> HpoError:
        return cfg.error("model.builder", f"{spec!r}: {problem}")

    try:
        builder = load_builder(spec)
    except BuilderProblem as e:
        raise refuse(str(e)) from None
    params = probe_params(cfg, "custom")
    shape = tuple(input_shape)
    call = f"builder({dict(params.arch)!r}, {shape}, {n_classes})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras' advice about input_shape arguments and the like
            model = builder(dict(params.arch), shape, n_classes)
            problem = output_problem(model, shape, n_classes)
    except Exception as e:  # noqa: BLE001 - the user's function
        raise refuse(f"{call} raised {_first_line(e)}") from None
    finally:
        keras.backend.clear_session()
    if problem is not None:
        raise refuse(f"{call} {problem}")
