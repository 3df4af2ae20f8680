"""Datasets: Fashion-MNIST, MNIST (IDX files), scikit-learn's digits, and the user's own: a
NumPy ``.npz`` file (``data.dataset = "npz"``) or a folder of class folders of images
(``"images"``, read by Keras' ``image_dataset_from_directory``), both at ``data.path``.

Examples come as float32 with shape (N, H, W, C) for images (pixels of uint8 data scaled to
[0, 1], float data as given) or (N, D) for feature vectors; labels as int32 in 0..K-1 (the
user's labels in sorted order, :attr:`Dataset.classes`).  A validation split is carved out of
the training set with a fixed seed; the test set is never touched while tuning (data without
one has one held out, with its own seed).  Everything is loaded once per process
(:func:`load_dataset` is cached).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from hpo.config import DataSettings, StudyConfig, check_input_shape
from hpo.errors import DataError

__all__ = [
    "Dataset",
    "Split",
    "check_data",
    "check_input",
    "data_name",
    "data_identity",
    "load_dataset",
    "read_idx",
    "find_idx_dir",
    "prepare",
    "split_sizes",
]

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
    classes: tuple[Any, ...] | None = None  # the user's label of each class 0..K-1 (None: 0..K-1 themselves)
    notes: tuple[str, ...] = ()  # what a worker says about the data once (a held-out test set)

    @property
    def n_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
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
    image_shape: tuple[int, ...]  # of one example: (H, W, C) images, (D,) feature vectors
    n_classes: int
    source: str
    classes: tuple[Any, ...] | None = None
    notes: tuple[str, ...] = ()


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
def load_dataset(
    name: str,
    data_dir: str | None = None,
    *,
    path: str | None = None,
    image_size: tuple[int, int] | None = None,
    color_mode: str = "rgb",
    split_seed: int = 0,
    test_fraction: float = 0.1,
) -> Dataset:
    """Load a dataset once per process (``split_seed`` and ``test_fraction`` hold out the test
    set of user data without one)."""
    if name == "digits":
        return _load_digits()
    if name in ("npz", "images"):
        from hpo import userdata

        if path is None:
            raise DataError(f"data.dataset = {name!r} needs data.path")
        load = (
            userdata.load_npz
            if name == "npz"
            else functools.partial(userdata.load_images, image_size=image_size, color_mode=color_mode)
        )
        return _own(name, load(path), split_seed, test_fraction)
    return _load_idx(name, data_dir)


def _load(settings: DataSettings, cached: bool = True) -> Dataset:
    load = load_dataset if cached else load_dataset.__wrapped__
    return load(
        settings.dataset,
        settings.data_dir,
        path=settings.path,
        image_size=settings.image_size,
        color_mode=settings.color_mode,
        split_seed=settings.split_seed,
        test_fraction=settings.validation_fraction,
    )


def _own(name: str, arrays: Any, seed: int, fraction: float) -> Dataset:
    """The user's data (:class:`hpo.userdata.Arrays`) as a dataset; without a test set,
    ``fraction`` of its examples (at least one) are held out as one, chosen with ``seed``, and
    its notes say so."""
    ds = Dataset(name, *arrays)
    if len(ds.x_test):
        return ds
    n = len(ds.x_train)
    n_test = max(1, int(round(n * fraction)))
    if n - n_test < 2:
        raise DataError(f"data.path: {ds.source!r} holds {n} examples: too few to hold out a test set and still train")
    order = np.random.default_rng([seed, 1]).permutation(n)
    test, train = order[:n_test], order[n_test:]
    note = (
        f"{ds.source} has no test set: {n_test} of its {n} examples are held out as one "
        f"(data.validation_fraction of them, chosen with data.split_seed = {seed})"
    )
    return Dataset(
        ds.name,
        ds.x_train[train],
        ds.y_train[train],
        ds.x_train[test],
        ds.y_train[test],
        ds.source,
        ds.classes,
        (*ds.notes, note),
    )


def check_data(cfg: StudyConfig) -> tuple[tuple[int, ...], int]:
    """Load the dataset once without keeping it, so that a missing or corrupt file, a split
    that leaves no image on one side, or data the model family cannot take is reported before
    processes that each load it for themselves (``--workers``) start.  Returns one example's
    shape and the number of classes."""
    ds = _load(cfg.data, cached=False)
    split_sizes(len(ds.x_train), cfg.data)
    shape = _example_shape(ds.x_train)
    check_input(cfg, shape)
    return shape, ds.n_classes


def check_input(cfg: StudyConfig, shape: tuple[int, ...]) -> None:
    """The model families of ``cfg`` can take examples of ``shape`` (see
    :func:`hpo.config.check_input_shape`)."""
    check_input_shape(cfg, shape, data_name(cfg.data))


def data_name(settings: DataSettings) -> str:
    """The dataset as messages and the banner name it: ``fashion_mnist``, ``'cats/'``."""
    return repr(settings.path) if settings.dataset in ("npz", "images") and settings.path else settings.dataset


def _example_shape(x: np.ndarray) -> tuple[int, ...]:
    """One example's shape as the models get it (images with their channel axis)."""
    return tuple(_scale(x[:1]).shape[1:])


def data_identity(settings: DataSettings) -> dict[str, Any]:
    """What a study on the user's data is bound to (stored with the study's identity, checked on
    resume): the file or folder, and the ``.npz`` file's SHA-256 or the folder's loading
    settings."""
    if settings.path is None or settings.dataset not in ("npz", "images"):
        return {}
    where = str(Path(settings.path).expanduser().absolute())
    if settings.dataset == "images":
        size = list(settings.image_size) if settings.image_size else None
        return {"data.path": where, "data.image_size": size, "data.color_mode": settings.color_mode}
    try:
        digest = _sha256(where)
    except OSError as e:
        raise DataError(f"data.path: cannot read {settings.path!r}: {e.strerror or e}") from None
    return {"data.path": where, "data.sha256": digest}


@functools.lru_cache(maxsize=4)
def _sha256(path: str) -> str:
    """The file's SHA-256, read once per process (as its data is loaded once: the study opened
    and the note saved again and again describe the same data)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_sizes(n: int, settings: DataSettings) -> tuple[int, int]:
    """(training, validation) images of a training set of ``n`` images split as ``settings`` say:
    ``validation_fraction`` of them are the validation part, of which the first
    ``validation_size`` (when not 0) are used; ``train_size`` caps the rest.  A split that leaves
    either side without an image is a :class:`DataError`."""
    n_val = int(round(n * settings.validation_fraction))
    n_train = n - n_val if not settings.train_size else min(settings.train_size, n - n_val)
    if settings.validation_size and n_val > 0:
        n_val = min(n_val, settings.validation_size)
    vf = f"data.validation_fraction = {settings.validation_fraction!r}"
    if n_val < 1:
        raise DataError(f"{vf} leaves no validation image of the {n} training images of {settings.dataset}: make it larger")
    if n_train < 1:
        raise DataError(f"{vf} leaves no training image of the {n} training images of {settings.dataset}: make it smaller")
    return n_train, n_val


def _scale(x: np.ndarray) -> np.ndarray:
    """float32 examples: uint8 pixels scaled to [0, 1], floats as given; (N, H, W) images get a
    channel axis."""
    out = x.astype(np.float32) / np.float32(255.0) if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
    return out[..., None] if out.ndim == 3 else out


@functools.lru_cache(maxsize=4)
def prepare(settings: DataSettings) -> Split:
    """Split and scale a dataset as the data settings say (cached per process)."""
    ds = _load(settings)
    n = len(ds.x_train)
    n_train, n_val = split_sizes(n, settings)
    part = int(round(n * settings.validation_fraction))  # the validation part, before validation_size
    order = np.random.default_rng(settings.split_seed).permutation(n)
    val, train = order[:n_val], order[part:][:n_train]
    return Split(
        x_train=_scale(ds.x_train[train]),
        y_train=ds.y_train[train].astype(np.int32),
        x_val=_scale(ds.x_train[val]),
        y_val=ds.y_train[val].astype(np.int32),
        x_test=_scale(ds.x_test),
        y_test=ds.y_test.astype(np.int32),
        image_shape=_example_shape(ds.x_train),
        n_classes=ds.n_classes,
        source=ds.source,
        classes=ds.classes,
        notes=ds.notes,
    )
