"""Datasets: Fashion-MNIST, MNIST (IDX files) and scikit-learn's digits.

Images come as float32 in [0, 1] with shape (N, H, W, 1); labels as int32.  A validation split
is carved out of the training set with a fixed seed; the test set is never touched while
tuning.  Everything is loaded once per process (:func:`load_dataset` is cached).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import stat
from pathlib import Path

import numpy as np

from hpo.config import DataSettings
from hpo.errors import DataError

__all__ = ["Dataset", "Split", "check_data", "load_dataset", "read_idx", "find_idx_dir", "prepare", "split_sizes"]

_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
# Debian's dataset-fashion-mnist, then Keras' own cache folder (Keras keeps MNIST as
# ~/.keras/datasets/mnist.npz, which its loader reads before it tries a download).
_SYSTEM_DIRS = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist", "~/.keras/datasets/fashion-mnist"),
    "mnist": ("~/.keras/datasets/mnist",),
}
_INSTALL_HINT = {
    "fashion_mnist": "install Debian's dataset-fashion-mnist or set data.data_dir",
    "mnist": "put the four IDX .gz files in a folder and set data.data_dir",
}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The raw arrays of a dataset, before any split."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


@dataclasses.dataclass(frozen=True)
class Split:
    """Train/validation/test arrays as a trial uses them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int, int]
    n_classes: int
    source: str


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one gzipped IDX file, checking its magic number and its declared size."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable gzip file ({e})") from None
    if len(raw) < 8:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: wrong IDX magic number {found}, expected {magic}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path}: truncated IDX file: header says {dims} ({expected} bytes), file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx_dir(name: str, data_dir: str | None) -> Path | None:
    """The first folder holding all four IDX files: ``data_dir``, Debian's, Keras' cache."""
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        try:
            info = os.stat(d)
        except FileNotFoundError:
            raise DataError(f"data.data_dir: folder {str(d)!r} does not exist") from None
        except (OSError, ValueError) as e:  # a loop of links, a name too long, a NUL byte ...
            reason = getattr(e, "strerror", None) or str(e)
            raise DataError(f"data.data_dir: cannot use {str(d)!r}: {reason}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise DataError(f"data.data_dir: {str(d)!r} is a file, not a folder")
        missing = [f for f in _IDX_FILES.values() if not (d / f).is_file()]
        if missing:
            raise DataError(f"data.data_dir: {str(d)!r} lacks {', '.join(missing)}")
        return d
    for folder in _SYSTEM_DIRS[name]:
        d = Path(folder).expanduser()
        if all((d / f).is_file() for f in _IDX_FILES.values()):
            return d
    return None


def _load_idx(name: str, data_dir: str | None) -> Dataset:
    d = find_idx_dir(name, data_dir)
    if d is None:
        arrays = _keras_download(name)
        source = f"keras.datasets.{name}"
    else:
        arrays = []
        for key, fname in _IDX_FILES.items():
            arrays.append(read_idx(d / fname, _IMAGE_MAGIC if key.startswith("x") else _LABEL_MAGIC))
        source = str(d)
    x_train, y_train, x_test, y_test = arrays
    for x, y, part in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{source}: {part} images {x.shape} and labels {y.shape} do not match")
    return Dataset(name, x_train, y_train, x_test, y_test, source)


def _keras_download(name: str) -> list[np.ndarray]:
    """Keras' own loader: its cache, else a download.  What it prints ("Downloading data from
    ...", a progress bar) is held back until it has succeeded, so a failure is one line."""
    import contextlib
    import io
    import sys

    from hpo.quiet import import_tensorflow

    import_tensorflow()
    import keras

    searched = ", ".join(_SYSTEM_DIRS[name])
    loader = getattr(keras.datasets, name)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as e:  # offline: urllib's error, or a corrupt cached download
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(
            f"{name}: no IDX files in {searched} and the Keras download failed ({reason}); {_INSTALL_HINT[name]}"
        ) from None
    sys.stdout.write(printed.getvalue())
    return [x_train, y_train, x_test, y_test]


def _load_digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("digits: needs scikit-learn: pip install 'hpo[digits]'") from None
    bunch = load_digits()
    x = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)
    y = bunch.target.astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", x[train], y[train], x[test], y[test], "sklearn.datasets.load_digits")


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, data_dir: str | None = None) -> Dataset:
    """Load a dataset once per process."""
    if name == "digits":
        return _load_digits()
    return _load_idx(name, data_dir)


def check_data(settings: DataSettings) -> None:
    """Load the dataset once without keeping it, so that a missing or corrupt file, or a split
    that leaves no image on one side, is reported before processes that each load it for
    themselves (``--workers``) start."""
    ds = load_dataset.__wrapped__(settings.dataset, settings.data_dir)
    split_sizes(len(ds.x_train), settings)


def split_sizes(n: int, settings: DataSettings) -> tuple[int, int]:
    """(training, validation) images of a training set of ``n`` images split as ``settings`` say;
    a split that leaves either side without an image is a :class:`DataError`."""
    n_val = int(round(n * settings.validation_fraction))
    n_train = n - n_val if not settings.train_size else min(settings.train_size, n - n_val)
    vf = f"data.validation_fraction = {settings.validation_fraction!r}"
    if n_val < 1:
        raise DataError(f"{vf} leaves no validation image of the {n} training images of {settings.dataset}: make it larger")
    if n_train < 1:
        raise DataError(f"{vf} leaves no training image of the {n} training images of {settings.dataset}: make it smaller")
    return n_train, n_val


def _scale(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) / np.float32(255.0))[..., None]


@functools.lru_cache(maxsize=4)
def prepare(settings: DataSettings) -> Split:
    """Split and scale a dataset as the data settings say (cached per process)."""
    ds = load_dataset(settings.dataset, settings.data_dir)
    n = len(ds.x_train)
    _, n_val = split_sizes(n, settings)
    order = np.random.default_rng(settings.split_seed).permutation(n)
    val, train = order[:n_val], order[n_val:]
    if settings.train_size:
        train = train[: settings.train_size]
    return Split(
        x_train=_scale(ds.x_train[train]),
        y_train=ds.y_train[train].astype(np.int32),
        x_val=_scale(ds.x_train[val]),
        y_val=ds.y_train[val].astype(np.int32),
        x_test=_scale(ds.x_test),
        y_test=ds.y_test.astype(np.int32),
        image_shape=(*ds.x_train.shape[1:], 1),
        n_classes=ds.n_classes,
        source=ds.source,
    )
