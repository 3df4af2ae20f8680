"""The user's own data: a NumPy ``.npz`` file or a folder of class folders of images.

Both become the arrays of a :class:`hpo.data.Dataset` (:class:`Arrays`): uint8 images (N, H, W[, C]), float images or float
feature vectors (N, D), and labels 0..K-1 with the user's labels kept in ``classes``.  Every
check runs before anything is stored and fails with one line naming the file and the array (or
the image file).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hpo.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "Arrays", "load_images", "load_npz"]


class Arrays(NamedTuple):
    """A dataset's arrays (an empty test set when it has none) and the user's label of each
    class 0..K-1."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    classes: tuple[Any, ...]


# The files keras.utils.image_dataset_from_directory reads; others in the folders are ignored.
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def _where(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data.path: {path!r} does not exist")
    return p


# --------------------------------------------------------------------------------------------
# .npz


def load_npz(path: str) -> Arrays:
    """``x_train``, ``y_train`` and optionally ``x_test``, ``y_test`` of an ``.npz`` file."""
    p = _where(path)
    if p.is_dir():
        raise DataError(f"data.path: {path!r} is a folder, not an .npz file (data.dataset = 'images' reads folders)")
    try:
        archive = np.load(p, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"data.path: {path!r} is not a readable NumPy .npz file ({_reason(e)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"data.path: {path!r} holds one array (a .npy file); save x_train, y_train with numpy.savez")
    with archive:
        names = set(archive.files)
        for key in ("x_train", "y_train"):
            if key not in names:
                raise DataError(f"data.path: {path!r} has no array {key!r} (it holds: {', '.join(sorted(names)) or 'nothing'})")
        if ("x_test" in names) != ("y_test" in names):
            have, lack = ("x_test", "y_test") if "x_test" in names else ("y_test", "x_test")
            raise DataError(f"data.path: {path!r} has {have} but no {lack}: give both or neither")
        arrays = {k: _array(archive, k, path) for k in ("x_train", "y_train", "x_test", "y_test") if k in names}
    x_train = _examples(arrays["x_train"], "x_train", path)
    x_test = _examples(arrays["x_test"], "x_test", path) if "x_test" in arrays else None
    if x_test is not None and x_test.shape[1:] != x_train.shape[1:]:
        raise DataError(f"{path}: x_test's examples are {x_test.shape[1:]}, x_train's {x_train.shape[1:]}: they must match")
    if x_test is not None and (x_test.dtype == np.uint8) != (x_train.dtype == np.uint8):
        raise DataError(
            f"{path}: x_train holds {x_train.dtype} and x_test {x_test.dtype}: give both as pixels 0-255 or both as floats"
        )
    y_train = _labels(arrays["y_train"], "y_train", len(x_train), path)
    y_test = _labels(arrays["y_test"], "y_test", len(x_test), path) if x_test is not None else None
    classes, y_train, y_test = _classes(y_train, y_test, path)
    empty = np.zeros((0, *x_train.shape[1:]), x_train.dtype)
    return Arrays(
        x_train,
        y_train,
        x_test if x_test is not None else empty,
        y_test if y_test is not None else np.zeros(0, np.int32),
        str(p),
        classes,
    )


def _reason(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _array(archive: Any, key: str, path: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as e:  # allow_pickle=False and an object array
        raise DataError(f"{path}: {key} holds Python objects, not numbers ({_reason(e)}); save a numeric array") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: {key} cannot be read ({_reason(e)})") from None


def _examples(x: np.ndarray, key: str, path: str) -> np.ndarray:
    """Images (N, H, W) or (N, H, W, C) of uint8 pixels or floats, or feature vectors (N, D)."""
    if x.ndim not in (2, 3, 4):
        raise DataError(f"{path}: {key} has shape {x.shape}: give images (N, H, W) or (N, H, W, C), or feature vectors (N, D)")
    if len(x) == 0 or 0 in x.shape[1:]:
        raise DataError(f"{path}: {key} has shape {x.shape}: it holds no examples")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind in "iu":
        low, high = int(x.min()), int(x.max())
        if low < 0 or high > 255:
            raise DataError(
                f"{path}: {key} holds integers from {low} to {high}: integer examples are pixels 0-255; give floats for other values"
            )
        return x.astype(np.uint8)
    if x.dtype.kind != "f":
        raise DataError(f"{path}: {key} holds {x.dtype} values: give uint8 pixels (0-255) or floats")
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(f"{path}: {key} holds NaN or infinite values (the first in example {row})")
    return x


def _labels(y: np.ndarray, key: str, n: int, path: str) -> np.ndarray:
    """Integer labels (N,) or one-hot rows (N, K), as a 1-D array of the user's labels."""
    if y.ndim == 2 and y.shape[1] > 1:
        if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all() or not (y.sum(axis=1) == 1).all():
            raise DataError(f"{path}: {key} has shape {y.shape} but is not one-hot (one 1 per row, else 0)")
        y = y.argmax(axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{path}: {key} has shape {y.shape}: give one integer label per example, or one-hot rows")
    if len(y) != n:
        x_key = key.replace("y_", "x_")
        raise DataError(f"{path}: {key} has {len(y)} labels but {x_key} has {n} examples")
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            row = int(np.argwhere(~whole)[0][0])
            raise DataError(f"{path}: {key} holds {y[row]!r} (example {row}): labels must be integers")
        return y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: {key} holds {y.dtype} values: labels must be integers")
    return y


def _classes(y_train: np.ndarray, y_test: np.ndarray | None, path: str) -> tuple[tuple[Any, ...], np.ndarray, np.ndarray | None]:
    """The user's labels in sorted order, and both label arrays mapped to 0..K-1."""
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise DataError(f"{path}: y_train holds a single class ({classes[0].item()!r}): there is nothing to classify")
    if y_test is not None:
        unseen = np.setdiff1d(np.unique(y_test), classes)
        if len(unseen):
            raise DataError(f"{path}: y_test holds label {unseen[0].item()!r}, which no example of y_train has")
    mapped = [np.searchsorted(classes, y).astype(np.int32) if y is not None else None for y in (y_train, y_test)]
    return tuple(c.item() for c in classes), mapped[0], mapped[1]


# --------------------------------------------------------------------------------------------
# A folder of class folders


def load_images(path: str, *, image_size: tuple[int, int] | None, color_mode: str) -> Arrays:
    """``path/<class>/*.png`` (or ``path/train/<class>/...`` and ``path/test/<class>/...``),
    read by ``keras.utils.image_dataset_from_directory`` at ``image_size`` (the images' own
    size when they all share one) in ``color_mode``."""
    root = _where(path)
    if not root.is_dir():
        raise DataError(f"data.path: {path!r} is a file, not a folder of class folders (data.dataset = 'npz' reads .npz files)")
    train, test = root, None
    if (root / "train").is_dir() and _class_dirs(root / "train"):
        train = root / "train"
        test = root / "test" if (root / "test").is_dir() else None
    classes = _class_dirs(train)
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise DataError(f"data.path: {str(train)!r} needs a sub-folder per class, at least two; found {found}")
    files = _check_files(train, classes)
    test_classes = _class_dirs(test) if test is not None else []
    extra = sorted(set(test_classes) - set(classes))
    if extra:
        raise DataError(f"data.path: {str(test)!r} has class folder {extra[0]!r}, which {str(train)!r} lacks")
    if test is not None:
        files += _check_files(test, test_classes)
    size = image_size or _common_size(files, path)
    x_train, y_train = _read_folder(train, classes, size, color_mode)
    if test is not None and test_classes:
        x_test, labels = _read_folder(test, test_classes, size, color_mode)
        y_test = np.array([classes.index(test_classes[i]) for i in labels], dtype=np.int32)
    else:
        x_test, y_test = np.zeros((0, *x_train.shape[1:]), np.uint8), np.zeros(0, np.int32)
    return Arrays(x_train, y_train, x_test, y_test, str(root), tuple(classes))


def _class_dirs(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _check_files(folder: Path, classes: list[str]) -> list[tuple[Path, tuple[int, int]]]:
    """Each image file opened and decoded by Pillow (Keras' own image library), so that a
    corrupt file is named before TensorFlow's decoder fails without a name; (file, (h, w))."""
    from PIL import Image, UnidentifiedImageError

    out = []
    for name in classes:
        files = sorted(f for f in (folder / name).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise DataError(f"data.path: class folder {str(folder / name)!r} holds no image ({', '.join(IMAGE_SUFFIXES)})")
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()
                    out.append((f, (im.height, im.width)))
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
                raise DataError(f"data.path: {str(f)!r} is not a readable image ({_reason(e)})") from None
    return out


def _common_size(files: list[tuple[Path, tuple[int, int]]], path: str) -> tuple[int, int]:
    first, size = files[0]
    for f, other in files:
        if other != size:
            raise DataError(
                f"data.path: images of different sizes in {path!r} ({size[0]}x{size[1]} {first.name}, "
                f"{other[0]}x{other[1]} {f.name}): set data.image_size = [height, width]"
            )
    return size


def _read_folder(folder: Path, classes: list[str], size: tuple[int, int], color_mode: str) -> tuple[np.ndarray, np.ndarray]:
    from hpo.quiet import import_tensorflow

    import_tensorflow()
    import keras

    try:
        ds = keras.utils.image_dataset_from_directory(
            str(folder),
            labels="inferred",
            label_mode="int",
            class_names=classes,
            color_mode=color_mode,
            batch_size=None,
            image_size=tuple(size),
            shuffle=False,
            verbose=False,
        )
        xs, ys = [], []
        for x, y in ds.batch(1024).as_numpy_iterator():
            xs.append(np.clip(np.rint(x), 0, 255).astype(np.uint8))
            ys.append(y.astype(np.int32))
    except Exception as e:  # noqa: BLE001 - TensorFlow's decoder: the file Pillow read it cannot
        raise DataError(f"data.path: Keras cannot read the images in {str(folder)!r} ({_reason(e)})") from None
    return np.concatenate(xs), np.concatenate(ys)
