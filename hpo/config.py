"""Study files: TOML -> validated, frozen :class:`StudyConfig`.

A study file has the sections ``[study]``, ``[data]``, ``[objective]``, ``[model]`` and one
``[space.<family>]`` table per model family.  In a space a scalar fixes a parameter, a list is
a categorical choice and a table ``{low, high, log, step}`` is a range.  Every error names the
file (or the ``--set`` override), the key and the bad value, in one line.

Every number has a range (:data:`BOUNDS`; a space key's is in :data:`SPACE_SCHEMAS`), checked
here, before anything is stored.  A study file is read only when it is a regular file of at most
:data:`MAX_STUDY_FILE_BYTES`.
"""

from __future__ import annotations

import copy
import dataclasses
import decimal
import difflib
import errno
import json
import math
import os
import re
import stat
import tomllib
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hpo.errors import ConfigError
from hpo.names import new_name_problem

__all__ = [
    "ACTIVATIONS",
    "BOUNDS",
    "BUILDER_PATTERN",
    "CUSTOM_FAMILY",
    "DATASETS",
    "DEFAULT_CAP_SLACK",
    "DEFAULT_MAX_PARAMS",
    "IMAGE_SIZES",
    "COLOR_MODES",
    "USER_DATASETS",
    "check_input_shape",
    "INDEX_SUFFIXES",
    "INITIALIZERS",
    "MAX_SEED",
    "MAX_STUDY_FILE_BYTES",
    "MONITORS",
    "OPTIMIZERS",
    "PRUNERS",
    "SAMPLERS",
    "SPACE_SCHEMAS",
    "Bound",
    "Choice",
    "DataSettings",
    "Fixed",
    "KeySpec",
    "ModelSettings",
    "ObjectiveSettings",
    "Range",
    "StudyConfig",
    "StudySettings",
    "apply_overrides",
    "check_run",
    "shown",
    "derive_seed",
    "indexed_key",
    "read_config",
    "resolve_study_file",
    "shipped_study_files",
    "parse_config",
    "parse_override",
    "resolve_key",
]

# Names as Keras' own ``get`` functions know them (a test checks each one resolves).
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "gelu", "swish", "softplus", "leaky_relu")
INITIALIZERS = (
    "zeros",
    "random_uniform",
    "random_normal",
    "truncated_normal",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
)
OPTIMIZERS = ("sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamax", "nadam", "adamw")
# The bundled datasets, then the user's own: "npz" (a NumPy .npz file) and "images" (a folder
# of class folders), both at data.path.
DATASETS = ("fashion_mnist", "mnist", "digits", "npz", "images")
USER_DATASETS = ("npz", "images")
# (height, width) of each bundled dataset's images, known without loading it (for shape checks).
IMAGE_SIZES = {"fashion_mnist": (28, 28), "mnist": (28, 28), "digits": (8, 8)}
COLOR_MODES = ("rgb", "grayscale")  # keras.utils.image_dataset_from_directory's, without "rgba"
MAX_IMAGE_SIDE = 8192
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "none")
# Default cap on a model's parameters (weights + batch-norm statistics).  20 M parameters are
# 320 MB of Adam training state (weights, gradients, two moments at 4 bytes each) -- memory is
# not the limit on a 24 GiB machine -- but over 3 minutes per Fashion-MNIST epoch of a dense
# net on a busy 2-core CPU, close to an hour per 15-epoch trial (docs/PERFORMANCE.md).
DEFAULT_MAX_PARAMS = 20_000_000
# Epochs a trial may go on beyond the answer's median before it is capped (docs/PERFORMANCE.md).
DEFAULT_CAP_SLACK = 1
MAX_CONFIRM_SEEDS = 50
MAX_SEED = 2**32 - 1  # NumPy's, Optuna's and Keras' seeds are 32-bit
MAX_STUDY_FILE_BYTES = 1 << 20  # a study file is a few kB; more is not a study file
MAX_TRIALS = 1_000_000
MAX_SECONDS = 365 * 24 * 3600
MAX_THREADS = 1024
MAX_WORKERS = 256
MAX_CHOICES = 1000  # values of one choice list
MAX_ENQUEUE = 1000  # tables of study.enqueue
MAX_GRID_POINTS = 100_000  # Optuna's GridSampler holds every point of the grid in memory
MAX_OPTION = 1_000_000  # integer sampler and pruner options
# Widths (units, filters): a wider layer is not built anyway under objective.max_params, and
# without that cap a 2**40-wide kernel is more memory than any machine can map.  Counts that
# multiply the parameters a trial suggests (layers, stages, blocks) have small ranges instead.
MAX_WIDTH = 2**40


def _number_text(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        value = int(value)
    return str(value) if isinstance(value, int) else repr(value)


def shown(value: Any) -> str:
    """``repr(value)``, shortened when it is long (a 400-digit integer)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:24]}...{text[-8:]} ({len(text)} characters)"


@dataclasses.dataclass(frozen=True)
class Bound:
    """The values a number may take: ``[minimum, maximum]``, either end open."""

    minimum: float
    maximum: float
    minimum_open: bool = False
    maximum_open: bool = False

    def __str__(self) -> str:
        left, right = "(" if self.minimum_open else "[", ")" if self.maximum_open else "]"
        return f"{left}{_number_text(self.minimum)}, {_number_text(self.maximum)}{right}"

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return False
        low_ok = value > self.minimum if self.minimum_open else value >= self.minimum
        high_ok = value < self.maximum if self.maximum_open else value <= self.maximum
        return low_ok and high_ok

    def problem(self, value: Any) -> str | None:
        """``"must be in [a, b], but got X"``, or None when ``value`` is in the bound."""
        return None if value in self else f"must be in {self}, but got {shown(value)}"


def derive_seed(seed: int, offset: int) -> int:
    """``seed + offset`` wrapped into the seeds NumPy and Optuna accept, ``[0, 2**32 - 1]``."""
    return (seed + offset) % (MAX_SEED + 1)


def check_run(**numbers: Any) -> None:
    """``check_run(n_trials=..., timeout=...)``: each number given (None: not given) within its
    :data:`RUN_BOUNDS`, else a :class:`ConfigError` naming it."""
    for name, value in numbers.items():
        if value is None:
            continue
        bound = RUN_BOUNDS[name]
        if name != "timeout" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"must be a whole number in {bound}, but got {shown(value)}", key=name)
        problem = bound.problem(value)
        if problem is not None:
            raise ConfigError(problem, key=name)


# Every number a study file's [study], [data] and [objective] hold (the space's are in SPACE_SCHEMAS).
BOUNDS: dict[str, Bound] = {
    "study.seed": Bound(0, MAX_SEED),
    "study.n_trials": Bound(0, MAX_TRIALS),
    "study.timeout": Bound(0, MAX_SECONDS),
    "study.max_trials": Bound(1, MAX_TRIALS),
    "study.heartbeat_interval": Bound(1, 3600),
    "study.grace_period": Bound(1, 7 * 24 * 3600),  # and longer than study.heartbeat_interval
    "study.max_retries": Bound(0, 100),
    "study.recycle_after": Bound(0, MAX_TRIALS),
    "study.max_consecutive_failures": Bound(0, MAX_TRIALS),
    "study.confirm_seeds": Bound(0, MAX_CONFIRM_SEEDS),
    "data.train_size": Bound(0, 10_000_000),
    "data.validation_fraction": Bound(0, 1, minimum_open=True, maximum_open=True),
    "data.validation_size": Bound(0, 10_000_000),
    "data.split_seed": Bound(0, MAX_SEED),
    "objective.target": Bound(0, 1, minimum_open=True),
    "objective.max_epochs": Bound(1, 1000),
    "objective.checks_per_epoch": Bound(1, 100),
    "objective.max_params": Bound(0, 1_000_000_000),
    "objective.cap_slack": Bound(0, 1000),
}

# The numbers of a run besides its study file (flags of ``study``, arguments of ``hpo.optimize``).
RUN_BOUNDS: dict[str, Bound] = {
    **{key: BOUNDS[f"study.{key}"] for key in ("n_trials", "timeout", "seed")},
    "threads": Bound(1, MAX_THREADS),
    "workers": Bound(1, MAX_WORKERS),
}

# Keras 3 names the metric ``accuracy``; ``acc`` is accepted as an alias.
MONITORS = {"val_accuracy": "val_accuracy", "accuracy": "accuracy", "val_acc": "val_accuracy", "acc": "accuracy"}


@dataclasses.dataclass(frozen=True)
class KeySpec:
    """What one search-space key accepts."""

    kind: str  # "int" | "float" | "bool" | "str"
    default: Any
    choices: tuple[str, ...] | None = None
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive unless ``maximum_open``
    maximum_open: bool = False
    minimum_open: bool = False
    help: str = ""
    # Count keys this key is indexed by, outermost first: ("stages", "blocks") makes one value
    # per block of each stage, named ``<key>_s{i}_b{j}``; see :func:`resolve_key`.
    per: tuple[str, ...] = ()

    @property
    def bound(self) -> Bound | None:
        if self.minimum is None or self.maximum is None:
            return None
        return Bound(self.minimum, self.maximum, self.minimum_open, self.maximum_open)


# Suffix letter of each count key in indexed names (``filters_1x1_s1_b0``, ``units_l2``).
INDEX_SUFFIXES = {"stages": "s", "blocks": "b", "layers": "l"}


@dataclasses.dataclass(frozen=True)
class Fixed:
    value: Any


@dataclasses.dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    step: float | None = None
    is_int: bool = False


ParamSpec = Fixed | Choice | Range

_TRAINING_KEYS = {
    "learning_rate": KeySpec(
        "float", 1e-3, minimum=0.0, minimum_open=True, maximum=1e38, help="optimizer learning rate (float32 holds it)"
    ),
    "optimizer": KeySpec("str", "adam", choices=OPTIMIZERS, help="Keras optimizer"),
    "batch_size": KeySpec("int", 32, minimum=1, maximum=65536, help="examples per gradient step"),
}

# One schema per model family; ``hpo.space`` turns each key into ``trial.suggest_*``.
SPACE_SCHEMAS: dict[str, dict[str, KeySpec]] = {
    "dense": {
        "layers": KeySpec("int", 1, minimum=1, maximum=64, help="number of hidden Dense layers"),
        "units": KeySpec("int", 128, minimum=1, maximum=MAX_WIDTH, help="units of each hidden layer (units_l0, units_l1, ...)"),
        "activation": KeySpec("str", "relu", choices=ACTIVATIONS, help="hidden-layer activation"),
        "initializer": KeySpec("str", "glorot_uniform", choices=INITIALIZERS, help="hidden-layer kernel initializer"),
        "dropout": KeySpec("float", 0.0, minimum=0.0, maximum=1.0, maximum_open=True, help="dropout after each hidden layer"),
        "batchnorm": KeySpec("bool", False, help="BatchNormalization between Dense and activation"),
        **_TRAINING_KEYS,
    },
    # Stem ConvBlock -> per stage: InceptionBlocks, then a DownsampleBlock -> pooling -> softmax.
    # An indexed key (``blocks_s1``, ``filters_3x3_s1_b2``, ``filters_1x1_s0``) overrides its
    # plain key for that stage/block, so non-uniform networks are exact points of the space.
    "inception": {
        "stem_filters": KeySpec("int", 96, minimum=1, maximum=MAX_WIDTH, help="filters of the 3x3 stem ConvBlock"),
        "stages": KeySpec(
            "int", 2, minimum=1, maximum=8, help="stages, each InceptionBlocks then a DownsampleBlock (halves the map)"
        ),
        "blocks": KeySpec(
            "int", 2, minimum=0, maximum=16, per=("stages",), help="InceptionBlocks per stage (blocks_s0, blocks_s1, ...)"
        ),
        "filters_1x1": KeySpec(
            "int",
            32,
            minimum=1,
            maximum=MAX_WIDTH,
            per=("stages", "blocks"),
            help="filters of a block's 1x1 branch (filters_1x1_s0_b0, ...)",
        ),
        "filters_3x3": KeySpec(
            "int",
            48,
            minimum=1,
            maximum=MAX_WIDTH,
            per=("stages", "blocks"),
            help="filters of a block's 3x3 branch (filters_3x3_s0_b0, ...)",
        ),
        "down_filters": KeySpec(
            "int",
            80,
            minimum=1,
            maximum=MAX_WIDTH,
            per=("stages",),
            help="filters of the stride-2 conv of a DownsampleBlock (down_filters_s0, ...)",
        ),
        "activation": KeySpec("str", "relu", choices=ACTIVATIONS, help="activation of every ConvBlock"),
        "initializer": KeySpec("str", "glorot_uniform", choices=INITIALIZERS, help="kernel initializer of every convolution"),
        "batchnorm": KeySpec("bool", True, help="BatchNormalization between each convolution and its activation"),
        "batchnorm_momentum": KeySpec(
            "float",
            0.9,
            minimum=0.0,
            minimum_open=True,
            maximum=1.0,
            maximum_open=True,
            help="momentum of BatchNormalization's moving statistics (Keras' 0.99 lags in short epochs)",
        ),
        "dropout": KeySpec("float", 0.0, minimum=0.0, maximum=1.0, maximum_open=True, help="dropout before the softmax head"),
        **_TRAINING_KEYS,
    },
    # The user's own model, made by the function ``model.builder`` names.  Besides the training
    # keys its space holds free keys: any name (:data:`FREE_KEY`), each value's kind inferred
    # from the value (:func:`_free_spec`); the builder gets them as a dict.
    "custom": {**_TRAINING_KEYS},
}
CUSTOM_FAMILY = "custom"
FREE_KEY = re.compile(r"[a-z][a-z0-9_]*")
MAX_FREE_KEY = 100  # characters of a free key's name
# ``model.builder``: "package.module:function" (the function may be an attribute path, "mod:Cls.build").
BUILDER_PATTERN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

_SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "study": (
        "name",
        "sampler",
        "sampler_options",
        "pruner",
        "pruner_options",
        "seed",
        "n_trials",
        "timeout",
        "max_trials",
        "heartbeat_interval",
        "grace_period",
        "max_retries",
        "recycle_after",
        "max_consecutive_failures",
        "deterministic_ops",
        "confirm_seeds",
        "enqueue",
    ),
    "data": (
        "dataset",
        "data_dir",
        "path",
        "image_size",
        "color_mode",
        "train_size",
        "validation_fraction",
        "validation_size",
        "split_seed",
    ),
    "objective": ("monitor", "target", "max_epochs", "checks_per_epoch", "max_params", "cap", "cap_slack"),
    "model": ("family", "builder"),
}
_SECTIONS = (*_SECTION_KEYS, "space")


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(mapping))


@dataclasses.dataclass(frozen=True)
class StudySettings:
    name: str
    sampler: str = "tpe"
    sampler_options: Mapping[str, Any] = dataclasses.field(default_factory=lambda: _frozen({}))
    pruner: str = "successive_halving"
    pruner_options: Mapping[str, Any] = dataclasses.field(default_factory=lambda: _frozen({}))
    seed: int | None = None
    n_trials: int | None = 20
    timeout: float | None = None
    max_trials: int | None = None  # cap on finished trials of the whole study, across all workers
    heartbeat_interval: int = 30  # seconds between a running trial's heartbeats (RDB storages)
    grace_period: int | None = None  # seconds without heartbeat before a trial is FAIL (None: 2 x interval)
    max_retries: int = 2  # times a trial left stale by a dead worker (or ended by a signal) is re-queued
    recycle_after: int = 10  # trials after which a worker continues in a fresh process (0: never)
    max_consecutive_failures: int = 5  # a worker stops after this many failed trials in a row (0: never)
    deterministic_ops: bool = False  # TensorFlow's deterministic ops (needs seed; Keras then drops XLA)
    confirm_seeds: int = 3  # runs (over seeds) a fast configuration needs before it is the answer (0, 1: off)
    enqueue: tuple[Mapping[str, Any], ...] = ()  # parameter tables enqueued once when the study is created

    @property
    def confirming(self) -> bool:
        return self.confirm_seeds > 1


@dataclasses.dataclass(frozen=True)
class DataSettings:
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    path: str | None = None  # the .npz file or the image folder of "npz" / "images"
    image_size: tuple[int, int] | None = None  # "images": (height, width) every image is resized to
    color_mode: str = "rgb"  # "images": "rgb" (3 channels) or "grayscale" (1)
    train_size: int = 0
    validation_fraction: float = 0.1
    validation_size: int = 0  # cap on validation images: the first ones of the validation part (0 = no cap)
    split_seed: int = 0


@dataclasses.dataclass(frozen=True)
class ObjectiveSettings:
    monitor: str = "val_accuracy"
    target: float = 0.88
    max_epochs: int = 15
    checks_per_epoch: int = 1
    max_params: int = DEFAULT_MAX_PARAMS  # larger models are not built (stop_reason "too_large"); 0: no cap
    cap: bool = True  # stop trials that can no longer beat the answer (stop_reason "capped")
    cap_slack: int = DEFAULT_CAP_SLACK  # epochs beyond ceil(answer median) before a trial is capped


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    family: tuple[str, ...] = ("dense",)
    builder: str | None = None  # the custom family's "package.module:function"

    @property
    def searched(self) -> bool:
        """True when the family itself is a searched parameter."""
        return len(self.family) > 1


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    source: str
    study: StudySettings
    data: DataSettings
    objective: ObjectiveSettings
    model: ModelSettings
    space: Mapping[str, Mapping[str, ParamSpec]]
    # The study file's tables after overrides (stored on the study, so ``confirm`` can rebuild it).
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    overridden: frozenset[str] = dataclasses.field(default=frozenset(), compare=False, repr=False)  # keys --set gave

    def error(self, key: str, message: str) -> ConfigError:
        """A one-line error about ``key`` of this study file (or of the override that set it)."""
        return _Checker(self.source, set(self.overridden)).error(key, message)

    def with_overrides(self, *overrides: str) -> StudyConfig:
        """A changed copy, validated like the study file: ``cfg.with_overrides("study.n_trials=7")``."""
        raw = copy.deepcopy(dict(self.raw))
        overridden = apply_overrides(raw, overrides, self.source)
        name = self.study.name
        return parse_config(raw, source=self.source, default_name=name, overridden=set(self.overridden) | overridden)

    def identity(self) -> dict[str, Any]:
        """Settings that make costs comparable; stored on the study and checked on resume."""
        return {
            "objective.monitor": self.objective.monitor,
            "objective.target": self.objective.target,
            "objective.max_epochs": self.objective.max_epochs,
            "objective.checks_per_epoch": self.objective.checks_per_epoch,
            "data.dataset": self.data.dataset,
        }


# --------------------------------------------------------------------------------------------
# Loading and overrides


def read_config(path: str | Path, overrides: Sequence[str] = ()) -> StudyConfig:
    """Read a study file (TOML, or JSON holding the same tables), apply ``--set`` overrides and
    validate what needs no Optuna (:func:`hpo.load_config` checks the rest).  A bare name such
    as ``quickstart`` reads the study file shipped with hpo (:func:`resolve_study_file`)."""
    path = resolve_study_file(path)
    source = str(path)
    text = _read_study_file(path, source)
    if Path(path).suffix == ".json":
        try:
            raw = json.loads(text, object_pairs_hook=_json_object)
        except json.JSONDecodeError as e:
            raise ConfigError(f"JSON syntax error: {e}", source=source) from None
        except _DuplicateKey as e:
            raise ConfigError(f"JSON object holds the key {e.args[0]!r} twice", source=source) from None
        except (ValueError, RecursionError) as e:
            raise ConfigError(f"cannot parse JSON: {_parse_failure(e)}", source=source) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"must hold a JSON object of tables, not {type(raw).__name__}", source=source)
    else:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"TOML syntax error: {e}", source=source) from None
        except (ValueError, RecursionError) as e:
            raise ConfigError(f"cannot parse TOML: {_parse_failure(e)}", source=source) from None
    if not raw:
        raise ConfigError("study file holds no tables: nothing to run", source=source)
    default_name = Path(path).stem
    overridden = apply_overrides(raw, overrides, source)
    return parse_config(raw, source=source, default_name=default_name, overridden=overridden)


def shipped_study_files() -> dict[str, Path]:
    """The ready study files installed with hpo (the package data of ``hpo.studies``, the
    repository's ``studies/``): name (the file's stem) -> path."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("hpo.studies")
    except ImportError:
        spec = None
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    return {p.stem: p for folder in folders[:1] for p in sorted(Path(folder).glob("*.toml")) if p.is_file()}


def _bare_name(text: str) -> bool:
    return bool(text) and "/" not in text and os.sep not in text and not text.endswith((".toml", ".json"))


def resolve_study_file(path: str | Path) -> str | Path:
    """``path`` itself, unless it is a bare name (no folder, no ``.toml``/``.json``) that names
    no file in the current folder but a shipped study file: ``quickstart`` -> the installed
    ``hpo/studies/quickstart.toml``."""
    text = str(path)
    if not _bare_name(text) or os.path.lexists(text):
        return path
    return shipped_study_files().get(text, path)


_FILE_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
_OS_REASONS = {
    errno.ENOENT: "no such file",
    errno.ELOOP: "a loop of symbolic links",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "a name in the path is too long",
    errno.EACCES: "permission denied",
}


def _read_study_file(path: str | Path, source: str) -> str:
    """The text of a study file: a regular file (never opened otherwise, so a FIFO or a device
    cannot hang or flood the read) of at most :data:`MAX_STUDY_FILE_BYTES`, UTF-8 with or
    without a byte-order mark, not empty."""

    def refuse(reason: str) -> ConfigError:
        return ConfigError(f"cannot read study file: {reason}", source=source)

    def os_reason(e: OSError) -> str:
        return _OS_REASONS.get(e.errno, e.strerror or type(e).__name__)

    try:
        info = os.stat(path)
    except FileNotFoundError:
        shipped = ", ".join(shipped_study_files()) if _bare_name(source) else ""
        hint = f" (a bare name reads a shipped one: {shipped})" if shipped else ""
        raise ConfigError(f"study file not found{hint}", source=source) from None
    except OSError as e:
        raise refuse(os_reason(e)) from None
    except ValueError:  # a NUL byte in the path
        raise refuse("the path holds a NUL byte") from None
    kind = stat.S_IFMT(info.st_mode)
    if kind != stat.S_IFREG:
        what = _FILE_KINDS.get(kind)
        raise refuse(f"it is {what}, not a regular file" if what else "it is not a regular file")
    if info.st_size > MAX_STUDY_FILE_BYTES:
        raise refuse(f"it holds {info.st_size} bytes; a study file may hold at most {MAX_STUDY_FILE_BYTES} (1 MiB)")
    try:
        # O_NONBLOCK: should the path have become a FIFO since the check, opening it does not wait.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise refuse(os_reason(e)) from None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise refuse("it is not a regular file")
        data = f.read(MAX_STUDY_FILE_BYTES + 1)
    if len(data) > MAX_STUDY_FILE_BYTES:
        raise refuse(f"it holds more than {MAX_STUDY_FILE_BYTES} bytes (1 MiB), the most a study file may hold")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise refuse(f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    if not text.strip():
        raise ConfigError("study file is empty", source=source)
    return text


class _DuplicateKey(ValueError):
    pass


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _parse_failure(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return (str(e).splitlines() or [type(e).__name__])[0].split(";")[0]


def parse_override(item: str) -> tuple[list[str], Any]:
    """``section.key=VALUE`` -> (["section", "key"], value); VALUE is TOML, a bare word a string."""
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE, but got {shown(item)}")
    key, _, text = item.partition("=")
    key = key.strip()
    path = key.split(".")
    if len(path) < 2 or not all(p.strip() for p in path):
        raise ConfigError(f"--set key must look like section.key, but got {shown(key)}")
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if not text or any(c in text for c in "[]{}\"'=,\n"):
            raise ConfigError(f"--set {key}: cannot parse value {shown(text)} as TOML") from None
        value = text
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"--set {key}: cannot parse value {shown(text)}: {_parse_failure(e)}") from None
    return [p.strip() for p in path], value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], source: str) -> set[str]:
    """Write each override into ``raw`` (in place); returns the dotted keys overridden."""
    done: set[str] = set()
    for item in overrides:
        path, value = parse_override(item)
        table = raw
        for i, part in enumerate(path[:-1]):
            nxt = table.setdefault(part, {})
            if not isinstance(nxt, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"--set {'.'.join(path)}: {where} is not a table", source=source)
            table = nxt
        table[path[-1]] = value
        done.add(".".join(path))
    return done


# --------------------------------------------------------------------------------------------
# Validation


class _Checker:
    """Carries the file name and the overridden keys so every message can name both."""

    def __init__(self, source: str, overridden: set[str]):
        self.source = source
        self.overridden = overridden

    def error(self, key: str, message: str) -> ConfigError:
        src = f"{self.source} (--set)" if any(key == o or key.startswith(o + ".") for o in self.overridden) else self.source
        return ConfigError(message, source=src, key=key)

    def unknown(self, key: str, valid: Sequence[str]) -> ConfigError:
        name = key.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(name, list(valid), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
        return self.error(key, f"unknown key{hint}")

    def table(self, raw: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = raw.get(key.rsplit(".", 1)[-1], {})
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, but got {shown(value)}")
        return value

    def check_keys(self, table: Mapping[str, Any], prefix: str, valid: Sequence[str]) -> None:
        for k in table:
            if k not in valid:
                raise self.unknown(f"{prefix}.{k}", valid)

    # scalar getters ---------------------------------------------------------------------
    def string(self, table: Mapping[str, Any], key: str, default: Any, choices: Sequence[str] | None = None) -> Any:
        name = key.rsplit(".", 1)[-1]
        if name not in table:
            return default
        value = table[name]
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string, but got {shown(value)}")
        if choices is not None and value not in choices:
            raise self.error(key, f"unknown value {shown(value)}; choose one of {', '.join(choices)}")
        return value

    def integer(self, table: Mapping[str, Any], key: str, default: Any) -> Any:
        """An integer within ``BOUNDS[key]`` (booleans are not integers here)."""
        name = key.rsplit(".", 1)[-1]
        if name not in table:
            return default
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer in {BOUNDS[key]}, but got {shown(value)}")
        self.bounded(key, value)
        return value

    def boolean(self, table: Mapping[str, Any], key: str, default: bool) -> bool:
        name = key.rsplit(".", 1)[-1]
        if name not in table:
            return default
        value = table[name]
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, but got {shown(value)}")
        return value

    def number(self, table: Mapping[str, Any], key: str, default: Any) -> Any:
        """A finite number within ``BOUNDS[key]``, as a float."""
        name = key.rsplit(".", 1)[-1]
        if name not in table:
            return default
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"must be a number in {BOUNDS[key]}, but got {shown(value)}")
        self.bounded(key, value)
        return float(value)

    def bounded(self, key: str, value: Any) -> None:
        problem = BOUNDS[key].problem(value)
        if problem is not None:
            raise self.error(key, problem)


def _check_value(chk: _Checker, key: str, spec: KeySpec, value: Any) -> Any:
    """Check one concrete value of a space key; return it normalised."""
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise chk.error(key, f"must be true or false, but got {shown(value)}")
        return value
    if spec.kind == "str":
        if not isinstance(value, str):
            raise chk.error(key, f"must be a string, but got {shown(value)}")
        if spec.choices is not None and value not in spec.choices:
            close = difflib.get_close_matches(value, list(spec.choices), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise chk.error(key, f"unknown value {shown(value)}{hint}; choose from {', '.join(spec.choices)}")
        return value
    what = "an integer" if spec.kind == "int" else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise chk.error(key, f"must be {what} in {spec.bound}, but got {shown(value)}")
    if spec.kind == "int" and isinstance(value, float) and not value.is_integer():
        raise chk.error(key, f"must be {what} in {spec.bound}, but got {shown(value)}")
    problem = spec.bound.problem(value)
    if problem is not None:
        raise chk.error(key, problem)
    return int(value) if spec.kind == "int" else float(value)


def _step_problem(low: float, high: float, step: float) -> str | None:
    """Why ``step`` does not divide ``[low, high]`` (Optuna would silently end the range at the
    last step below ``high``), or None."""
    dec = lambda x: decimal.Decimal(str(x))  # noqa: E731 - exact decimal arithmetic, as Optuna checks it
    span, d_step = dec(high) - dec(low), dec(step)
    if span % d_step == 0:
        return None
    last = dec(low) + (span // d_step) * d_step
    return (
        f"step {step!r} does not divide the range from {low!r} to {high!r} (Optuna would end it at {last}): "
        f"make high {last} or choose a step that divides {span}"
    )


def _parse_spec(chk: _Checker, key: str, spec: KeySpec, raw: Any) -> ParamSpec:
    """A scalar fixes, a list chooses, a table ``{low, high, log, step}`` ranges."""
    if isinstance(raw, list):
        if not raw:
            raise chk.error(key, "empty choice list: give at least one value")
        if len(raw) > MAX_CHOICES:
            raise chk.error(key, f"a choice list may hold at most {MAX_CHOICES} values, but holds {len(raw)}")
        values = tuple(_check_value(chk, key, spec, v) for v in raw)
        if len(set(values)) != len(values):
            raise chk.error(key, f"duplicate values in choice list {shown(raw)}")
        return Choice(values)
    if isinstance(raw, dict):
        if spec.kind not in ("int", "float"):
            raise chk.error(key, f"a range needs a numeric key, but {key} is {spec.kind}: give a value or a list")
        for k in raw:
            if k not in ("low", "high", "log", "step"):
                raise chk.unknown(f"{key}.{k}", ("low", "high", "log", "step"))
        for k in ("low", "high"):
            if k not in raw:
                raise chk.error(key, f"a range needs both low and high, but got {shown(raw)}")
        low = _check_value(chk, f"{key}.low", spec, raw["low"])
        high = _check_value(chk, f"{key}.high", spec, raw["high"])
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise chk.error(f"{key}.log", f"must be true or false, but got {shown(log)}")
        if low > high:
            raise chk.error(key, f"low must be <= high, but got low={low!r} > high={high!r}")
        if log and low <= 0:
            raise chk.error(key, f"a log range needs low > 0, but got low={low!r}")
        step = raw.get("step")
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, (int, float)) or not (math.isfinite(step) and step > 0):
                raise chk.error(f"{key}.step", f"must be a positive number, but got {shown(step)}")
            if spec.kind == "int":
                if not float(step).is_integer():
                    raise chk.error(f"{key}.step", f"must be an integer for an integer key, but got {step!r}")
                step = int(step)
            if log:
                raise chk.error(key, "a range cannot have both log = true and a step")
            problem = _step_problem(low, high, step)
            if problem is not None:
                raise chk.error(key, problem)
        return Range(low=low, high=high, log=log, step=step, is_int=spec.kind == "int")
    return Fixed(_check_value(chk, key, spec, raw))


def spec_values_max(spec: ParamSpec) -> Any:
    """Largest value a spec can produce (used for conditional per-layer keys and shape checks)."""
    if isinstance(spec, Fixed):
        return spec.value
    if isinstance(spec, Choice):
        return max(spec.values)
    return spec.high


def parse_config(
    raw: Mapping[str, Any],
    *,
    source: str = "<config>",
    default_name: str = "hpo",
    overridden: set[str] | None = None,
) -> StudyConfig:
    """Validate a study-file dictionary and freeze it."""
    chk = _Checker(source, overridden or set())
    for section in raw:
        if section not in _SECTIONS:
            raise chk.unknown(section, _SECTIONS)
    tables = {}
    for section in _SECTION_KEYS:
        tables[section] = chk.table(raw, section)
        chk.check_keys(tables[section], section, _SECTION_KEYS[section])

    study = _parse_study(chk, tables["study"], default_name)
    data = _parse_data(chk, tables["data"])
    objective = _parse_objective(chk, tables["objective"])
    model = _parse_model(chk, tables["model"])
    space = _parse_space(chk, chk.table(raw, "space"), model)
    cfg = StudyConfig(
        source=source,
        study=study,
        data=data,
        objective=objective,
        model=model,
        space=space,
        raw=_plain(raw),
        overridden=frozenset(overridden or ()),
    )
    _check_image_size(chk, cfg)
    return cfg


def _plain(value: Any) -> Any:
    """A copy of TOML data made of JSON types (dates and times become strings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _parse_study(chk: _Checker, t: Mapping[str, Any], default_name: str) -> StudySettings:
    name = chk.string(t, "study.name", default_name)
    if (problem := new_name_problem(name)) is not None:
        raise chk.error("study.name", problem)
    sampler = chk.string(t, "study.sampler", "tpe", SAMPLERS)
    pruner = chk.string(t, "study.pruner", "successive_halving", PRUNERS)
    sampler_options = chk.table(t, "study.sampler_options")
    pruner_options = chk.table(t, "study.pruner_options")
    seed = chk.integer(t, "study.seed", None)
    n_trials = chk.integer(t, "study.n_trials", 20)
    timeout = chk.number(t, "study.timeout", None)
    max_trials = chk.integer(t, "study.max_trials", None)
    heartbeat_interval = chk.integer(t, "study.heartbeat_interval", 30)
    grace_period = chk.integer(t, "study.grace_period", None)
    if grace_period is not None and grace_period <= heartbeat_interval:
        raise chk.error(
            "study.grace_period",
            f"must be longer than study.heartbeat_interval ({heartbeat_interval} s), but got {grace_period!r}: "
            "live trials would be failed",
        )
    max_retries = chk.integer(t, "study.max_retries", 2)
    recycle_after = chk.integer(t, "study.recycle_after", 10)
    max_consecutive_failures = chk.integer(t, "study.max_consecutive_failures", 5)
    deterministic_ops = chk.boolean(t, "study.deterministic_ops", False)
    confirm_seeds = chk.integer(t, "study.confirm_seeds", 3)
    enqueue = t.get("enqueue", [])
    if not isinstance(enqueue, list) or not all(isinstance(e, dict) for e in enqueue):
        raise chk.error("study.enqueue", f"must be a list of parameter tables, but got {shown(enqueue)}")
    if len(enqueue) > MAX_ENQUEUE:
        raise chk.error("study.enqueue", f"may hold at most {MAX_ENQUEUE} tables, but holds {len(enqueue)}")
    if deterministic_ops and seed is None:
        raise chk.error("study.deterministic_ops", "needs study.seed (or --seed): without a seed no two runs start alike")
    return StudySettings(
        name=name,
        sampler=sampler,
        sampler_options=_frozen(sampler_options),
        pruner=pruner,
        pruner_options=_frozen(pruner_options),
        seed=seed,
        n_trials=n_trials,
        timeout=timeout or None,
        max_trials=max_trials,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        max_retries=max_retries,
        recycle_after=recycle_after,
        max_consecutive_failures=max_consecutive_failures,
        deterministic_ops=deterministic_ops,
        confirm_seeds=confirm_seeds,
        enqueue=tuple(_frozen(e) for e in enqueue),
    )


def _parse_data(chk: _Checker, t: Mapping[str, Any]) -> DataSettings:
    dataset = chk.string(t, "data.dataset", "fashion_mnist", DATASETS)
    data_dir = chk.string(t, "data.data_dir", None)
    path = chk.string(t, "data.path", None)
    color_mode = chk.string(t, "data.color_mode", "rgb", COLOR_MODES)
    image_size = _image_size(chk, t)
    train_size = chk.integer(t, "data.train_size", 0)
    vf = chk.number(t, "data.validation_fraction", 0.1)
    validation_size = chk.integer(t, "data.validation_size", 0)
    split_seed = chk.integer(t, "data.split_seed", 0)
    own = dataset in USER_DATASETS
    if own and path is None:
        raise chk.error("data.path", f"data.dataset = {dataset!r} needs data.path: the {_OWN_DATA[dataset]}")
    if path is not None and not own:
        raise chk.error("data.path", f"is for data.dataset = 'npz' or 'images', not {dataset!r}")
    if data_dir is not None and own:
        raise chk.error(
            "data.data_dir", f"is for the IDX files of fashion_mnist and mnist, not {dataset!r}: data.path names your data"
        )
    for key in ("image_size", "color_mode"):
        if key in t and dataset != "images":
            raise chk.error(f"data.{key}", f"is for data.dataset = 'images' (a folder of image files), not {dataset!r}")
    return DataSettings(
        dataset=dataset,
        data_dir=data_dir,
        path=path,
        image_size=image_size,
        color_mode=color_mode,
        train_size=train_size,
        validation_fraction=vf,
        validation_size=validation_size,
        split_seed=split_seed,
    )


_OWN_DATA = {"npz": ".npz file holding x_train and y_train", "images": "folder of class folders of images"}


def _image_size(chk: _Checker, t: Mapping[str, Any]) -> tuple[int, int] | None:
    if "image_size" not in t:
        return None
    value, bound = t["image_size"], Bound(1, MAX_IMAGE_SIDE)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or bound.problem(v) for v in value)
    ):
        raise chk.error("data.image_size", f"must be [height, width], two integers in {bound}, but got {shown(value)}")
    return (value[0], value[1])


def _parse_objective(chk: _Checker, t: Mapping[str, Any]) -> ObjectiveSettings:
    monitor = chk.string(t, "objective.monitor", "val_accuracy", tuple(MONITORS))
    target = chk.number(t, "objective.target", 0.88)
    max_epochs = chk.integer(t, "objective.max_epochs", 15)
    checks = chk.integer(t, "objective.checks_per_epoch", 1)  # each check is a pass over the validation split
    max_params = chk.integer(t, "objective.max_params", DEFAULT_MAX_PARAMS)
    cap = chk.boolean(t, "objective.cap", True)
    cap_slack = chk.integer(t, "objective.cap_slack", DEFAULT_CAP_SLACK)
    if cap_slack > max_epochs:
        raise chk.error("objective.cap_slack", f"must be <= objective.max_epochs ({max_epochs}), but got {cap_slack}")
    return ObjectiveSettings(
        monitor=MONITORS[monitor],
        target=target,
        max_epochs=max_epochs,
        checks_per_epoch=checks,
        max_params=max_params,
        cap=cap,
        cap_slack=cap_slack,
    )


def _parse_model(chk: _Checker, t: Mapping[str, Any]) -> ModelSettings:
    raw = t.get("family", "dense")
    families = raw if isinstance(raw, list) else [raw]
    if not families:
        raise chk.error("model.family", "empty choice list: give at least one family")
    for f in families:
        if not isinstance(f, str) or f not in SPACE_SCHEMAS:
            raise chk.error("model.family", f"unknown family {shown(f)}; choose from {', '.join(SPACE_SCHEMAS)}")
    if len(set(families)) != len(families):
        raise chk.error("model.family", f"duplicate families in {shown(raw)}")
    builder = t.get("builder")
    if builder is not None and CUSTOM_FAMILY not in families:
        raise chk.error("model.builder", f"{shown(builder)} is for model.family = 'custom', not {shown(raw)}")
    if builder is None and CUSTOM_FAMILY in families:
        raise chk.error(
            "model.builder",
            "model.family = 'custom' needs model.builder = \"package.module:function\", the function that builds the model",
        )
    if builder is not None and not (isinstance(builder, str) and BUILDER_PATTERN.fullmatch(builder)):
        raise chk.error("model.builder", f'must be "package.module:function", but got {shown(builder)}')
    return ModelSettings(family=tuple(families), builder=builder)


def indexed_key(key: str, per: Sequence[str], indices: Sequence[int]) -> str:
    """``indexed_key("filters_1x1", ("stages", "blocks"), (1, 0)) == "filters_1x1_s1_b0"``."""
    return key + "".join(f"_{INDEX_SUFFIXES[c]}{i}" for c, i in zip(per, indices, strict=False))


def resolve_key(specs: Mapping[str, ParamSpec], family: str, key: str, indices: Sequence[int]) -> str:
    """The space key that governs ``key`` at ``indices``: the most specific indexed key present.

    ``filters_3x3`` at stage 1, block 2 is governed by ``filters_3x3_s1_b2`` if the space has
    it, else ``filters_3x3_s1``, else ``filters_3x3``.
    """
    per = SPACE_SCHEMAS[family][key].per
    for n in range(len(indices), 0, -1):
        name = indexed_key(key, per, indices[:n])
        if name in specs:
            return name
    return key


_INDEXED = re.compile(r"^(?P<key>[a-z0-9_]+?)(?P<suffix>(?:_[a-z]\d+)+)$")


def _split_indexed(schema: Mapping[str, KeySpec], name: str) -> tuple[str, tuple[int, ...]] | None:
    """``"blocks_s1"`` -> ``("blocks", (1,))`` when the schema indexes ``blocks`` so, else None."""
    m = _INDEXED.match(name)
    if m is None or m.group("key") not in schema:
        return None
    per = schema[m.group("key")].per
    parts = re.findall(r"_([a-z])(\d+)", m.group("suffix"))
    if not per or len(parts) > len(per):
        return None
    if any(letter != INDEX_SUFFIXES[c] for (letter, _), c in zip(parts, per, strict=False)):
        return None
    return m.group("key"), tuple(int(i) for _, i in parts)


def _parse_space(chk: _Checker, t: Mapping[str, Any], model: ModelSettings) -> Mapping[str, Mapping[str, ParamSpec]]:
    for family in t:
        if family not in SPACE_SCHEMAS:
            raise chk.unknown(f"space.{family}", tuple(SPACE_SCHEMAS))
    out: dict[str, Mapping[str, ParamSpec]] = {}
    for family, schema in SPACE_SCHEMAS.items():
        table = chk.table(t, f"space.{family}")
        specs = {}
        indexed: dict[str, tuple[str, tuple[int, ...]]] = {}
        if family == CUSTOM_FAMILY:
            out[family] = _parse_custom_space(chk, table, model)
            continue
        for name in table:
            if name in schema:
                continue
            split = _split_indexed(schema, name)
            if split is None:
                raise chk.unknown(f"space.{family}.{name}", tuple(schema))
            indexed[name] = split
        for key, spec in schema.items():
            raw = table.get(key, spec.default)
            specs[key] = _parse_spec(chk, f"space.{family}.{key}", spec, raw)
        for name, (key, _) in indexed.items():
            specs[name] = _parse_spec(chk, f"space.{family}.{name}", schema[key], table[name])
        for name, (key, indices) in indexed.items():
            _check_reach(chk, family, specs, name, key, indices)
        out[family] = _frozen(specs)
    return _frozen(out)


def _parse_custom_space(chk: _Checker, table: Mapping[str, Any], model: ModelSettings) -> Mapping[str, ParamSpec]:
    """``[space.custom]``: the training keys as in every family, then free keys in the file's order."""
    schema = SPACE_SCHEMAS[CUSTOM_FAMILY]
    if table and CUSTOM_FAMILY not in model.family:
        family = model.family[0] if len(model.family) == 1 else list(model.family)
        key = f"space.{CUSTOM_FAMILY}.{next(iter(table))}"
        raise chk.error(key, f"[space.custom] is for model.family = 'custom' (with model.builder), not {shown(family)}")
    specs: dict[str, ParamSpec] = {}
    for key, spec in schema.items():
        try:
            specs[key] = _parse_spec(chk, f"space.custom.{key}", spec, table.get(key, spec.default))
        except ConfigError as e:
            shared = ", ".join(schema)
            raise ConfigError(
                f"{e.message} ({shared} are the training keys every family shares; the builder does not get them: "
                "give your own parameter another name)",
                source=e.source,
                key=e.key,
            ) from None
    for name, raw in table.items():
        if name in schema:
            continue
        key = f"space.custom.{name}"
        if not FREE_KEY.fullmatch(name) or len(name) > MAX_FREE_KEY:
            raise chk.error(
                key,
                f"a parameter name must be a lowercase letter, then lowercase letters, digits or _ "
                f"([a-z][a-z0-9_]*, at most {MAX_FREE_KEY} characters), but got {shown(name)}",
            )
        if name == "family":
            raise chk.error(key, "'family' is reserved (the trial's model family): give the parameter another name")
        specs[name] = _parse_spec(chk, key, _free_spec(chk, key, raw), raw)
    return _frozen(specs)


# What a free key of [space.custom] accepts: numbers are finite, integers fit in 64 bits.
_FREE_BOUNDS = {
    "int": {"minimum": -(2**63), "maximum": 2**63 - 1},
    "float": {"minimum": -math.inf, "maximum": math.inf, "minimum_open": True, "maximum_open": True},
}


def _free_spec(chk: _Checker, key: str, raw: Any) -> KeySpec:
    """The :class:`KeySpec` of a free key, its kind inferred from the value: ``true``/``false``
    is a bool, a string a str, an integer an int, any other number a float; a list's values
    must share one kind (integers and floats together are floats); a range ``{low, high}`` is
    an int range when both ends are integers, else a float range."""

    def kind_of(value: Any) -> str | None:
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, int):
            return "int"
        if isinstance(value, float):
            return "float"
        return "str" if isinstance(value, str) else None

    if isinstance(raw, dict):
        ends = [raw.get("low"), raw.get("high")]
        kind = "int" if all(kind_of(v) == "int" for v in ends) else "float"
    elif isinstance(raw, list):
        kinds = {kind_of(v) for v in raw}
        if kinds == {"int", "float"}:
            kinds = {"float"}
        if None in kinds or len(kinds) > 1:
            raise chk.error(
                key, f"a choice list must hold values of one kind (numbers, strings or true/false), but got {shown(raw)}"
            )
        kind = kinds.pop() if kinds else "str"  # an empty list: refused by _parse_spec
    else:
        kind = kind_of(raw)
        if kind is None:
            raise chk.error(
                key,
                f"must be a number, a string, true/false, a list of them or a range {{low, high}}, but got {shown(raw)}",
            )
    return KeySpec(kind, None, **_FREE_BOUNDS.get(kind, {}), help="a parameter of the user's builder")


def _check_reach(
    chk: _Checker, family: str, specs: Mapping[str, ParamSpec], name: str, key: str, indices: tuple[int, ...]
) -> None:
    """An indexed key must address a stage/block that can exist, or it would silently do nothing."""
    per = SPACE_SCHEMAS[family][key].per
    for n, (count, i) in enumerate(zip(per, indices, strict=False)):
        governing = resolve_key(specs, family, count, indices[:n])
        most = int(spec_values_max(specs[governing]))
        if i >= most:
            raise chk.error(
                f"space.{family}.{name}",
                f"addresses {count[:-1]} {i} (counted from 0), but space.{family}.{governing} allows at most {most}",
            )


def _check_image_size(chk: _Checker, cfg: StudyConfig) -> None:
    """What :func:`check_input_shape` can check before the data is loaded: the bundled datasets'
    image sizes, and a folder's ``data.image_size``."""
    size = IMAGE_SIZES.get(cfg.data.dataset) or cfg.data.image_size
    if size is not None:
        _check_stages(chk, cfg, size, f"{cfg.data.dataset}'s")


def check_input_shape(cfg: StudyConfig, shape: tuple[int, ...], what: str) -> None:
    """Refuse, before anything is stored, a family that cannot take the data's examples of
    ``shape`` (``what`` names the data): the Inception family needs images, and its
    downsampling must not shrink them below 1x1."""
    if "inception" not in cfg.model.family:
        return
    chk = _Checker(cfg.source, set(cfg.overridden))
    if len(shape) != 3:
        raise chk.error(
            "model.family",
            f"the inception family needs images (height, width, channels), but {what} holds feature vectors of "
            f"{shape[0]} values: use the dense family",
        )
    _check_stages(chk, cfg, shape[:2], f"{what}'s")


def _check_stages(chk: _Checker, cfg: StudyConfig, size_hw: Sequence[int], whose: str) -> None:
    """Refuse an Inception space whose downsampling shrinks ``size_hw`` images below 1x1."""
    if "inception" not in cfg.model.family:
        return
    height, width = size_hw
    size = min(height, width)
    sizes = [size]
    while size >= 3:
        size = (size - 3) // 2 + 1
        sizes.append(size)
    fits = len(sizes) - 1  # downsampling stages the images survive
    stages = int(spec_values_max(cfg.space["inception"]["stages"]))
    if stages > fits:
        path = " -> ".join(str(s) for s in [*sizes, 0][: stages + 1])
        raise chk.error(
            "space.inception.stages",
            f"{stages} stages would downsample {whose} {height}x{width} images below 1x1 ({path}); at most {fits} fit",
        )
