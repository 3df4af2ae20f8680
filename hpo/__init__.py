"""hpo: how few training epochs does it take to reach a target accuracy, and which
architecture gets there?  Optuna studies of Keras models, stored in an RDB.

    import hpo
    cfg = hpo.load_config("studies/fashion_dense.toml", ["study.n_trials=7"])
    study = hpo.optimize(cfg, storage="sqlite:///studies/hpo.db")
    hpo.report(study.study_name, storage="sqlite:///studies/hpo.db")

The names below are imported when first used, so ``import hpo`` (and ``import hpo.config``)
load neither Optuna nor TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

from hpo.errors import ConfigError, DataError, HpoError, StorageError, StudyMismatchError

__version__ = "0.1.0"

_LAZY = {
    "StudyConfig": "hpo.config",
    "compare": "hpo.api",
    "load_config": "hpo.api",
    "optimize": "hpo.api",
    "report": "hpo.api",
    "TargetPruning": "hpo.callbacks",
}

__all__ = [
    "ConfigError",
    "DataError",
    "HpoError",
    "StorageError",
    "StudyConfig",
    "StudyMismatchError",
    "TargetPruning",
    "__version__",
    "compare",
    "load_config",
    "optimize",
    "report",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hpo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
