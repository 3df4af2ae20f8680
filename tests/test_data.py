"""Datasets from the real IDX files, their checks, and the fixed validation split."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from hpo.config import DataSettings
from hpo.data import find_idx_dir, load_dataset, prepare, read_idx, split_sizes
from hpo.errors import DataError

FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_fashion_mnist_loads_from_the_system_folder() -> None:
    ds = load_dataset("fashion_mnist")
    assert ds.x_train.shape == (60000, 28, 28) and ds.y_train.shape == (60000,)
    assert ds.x_test.shape == (10000, 28, 28) and ds.n_classes == 10
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert load_dataset("fashion_mnist") is ds  # once per process


def test_split_is_fixed_disjoint_and_capped() -> None:
    a = prepare(DataSettings(train_size=1000, validation_fraction=0.1))
    b = prepare(DataSettings(train_size=1000, validation_fraction=0.1, split_seed=0))
    assert a is b
    assert a.x_train.shape == (1000, 28, 28, 1) and a.x_val.shape == (6000, 28, 28, 1)
    assert a.x_train.dtype == np.float32 and 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    assert a.x_test.shape == (10000, 28, 28, 1)
    full = prepare(DataSettings(validation_fraction=0.1))
    assert len(full.x_train) == 54000
    # the capped training set is a prefix of the full one, and never overlaps validation
    assert np.array_equal(full.x_train[:1000], a.x_train)
    train_rows = {row.tobytes() for row in full.x_train[:3000]}
    assert not any(row.tobytes() in train_rows for row in full.x_val[:3000])
    other = prepare(DataSettings(train_size=1000, split_seed=1))
    assert not np.array_equal(other.x_train, a.x_train)


@pytest.mark.parametrize(
    ("settings", "sizes"),
    [
        (DataSettings(), (54000, 6000)),
        (DataSettings(train_size=2000), (2000, 6000)),
        (DataSettings(train_size=2000, validation_size=1000), (2000, 1000)),
        (DataSettings(validation_size=1000), (54000, 1000)),  # the training images stay as they were
        (DataSettings(train_size=2000, validation_size=10_000), (2000, 6000)),  # a cap above the part
        (DataSettings(validation_fraction=0.5, validation_size=1), (30000, 1)),
    ],
)
def test_split_sizes(settings: DataSettings, sizes: tuple[int, int]) -> None:
    assert split_sizes(60000, settings) == sizes


def test_validation_size_takes_the_first_images_of_the_validation_part() -> None:
    full = prepare(DataSettings(train_size=2000))
    small = prepare(DataSettings(train_size=2000, validation_size=1000))
    assert small.x_val.shape == (1000, 28, 28, 1) and len(small.y_val) == 1000
    assert np.array_equal(small.x_val, full.x_val[:1000]) and np.array_equal(small.y_val, full.y_val[:1000])
    assert np.array_equal(small.x_train, full.x_train) and np.array_equal(small.y_train, full.y_train)
    assert prepare(DataSettings(train_size=2000, validation_size=1000)) is small  # cached
    val_rows = {row.tobytes() for row in full.x_val}  # the whole validation part
    assert not any(row.tobytes() in val_rows for row in small.x_train)
    other = prepare(DataSettings(train_size=2000, validation_size=1000, split_seed=1))
    assert not np.array_equal(other.x_val, small.x_val)


def test_validation_size_is_a_bounded_study_file_key() -> None:
    from hpo.api import load_config
    from hpo.errors import ConfigError

    base = {"data": {"dataset": "digits", "train_size": 300, "validation_size": 100}}
    assert load_config(base).data.validation_size == 100
    assert load_config(base, ["data.validation_size=0"]).data.validation_size == 0
    for bad in ("-1", "10000001", "0.5", "true"):
        with pytest.raises(ConfigError, match=r"data.validation_size: must be (an integer )?in \[0, 10000000\], but got"):
            load_config(base, [f"data.validation_size={bad}"])


def test_digits_has_8x8_images() -> None:
    split = prepare(DataSettings(dataset="digits"))
    assert split.image_shape == (8, 8, 1)
    assert split.n_classes == 10
    assert len(split.x_train) + len(split.x_val) + len(split.x_test) == 1797


def copy_files(dst: Path) -> Path:
    src = find_idx_dir("fashion_mnist", None)
    assert src is not None, "dataset-fashion-mnist is not installed"
    dst.mkdir()
    for name in FILES:
        shutil.copy(src / name, dst / name)
    return dst


def test_data_dir_is_used(tmp_path: Path) -> None:
    d = copy_files(tmp_path / "fm")
    ds = load_dataset("fashion_mnist", str(d))
    assert ds.source == str(d)


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.data_dir.*does not exist"):
        load_dataset("fashion_mnist", str(tmp_path / "absent"))


def test_data_dir_missing_a_file(tmp_path: Path) -> None:
    d = copy_files(tmp_path / "fm")
    (d / FILES[3]).unlink()
    with pytest.raises(DataError, match="t10k-labels"):
        load_dataset("fashion_mnist", str(d))


def test_wrong_magic_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as f:
        f.write((2049).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="wrong IDX magic number 2049, expected 2051"):
        read_idx(path, 2051)


def test_truncated_file_is_named(tmp_path: Path) -> None:
    d = copy_files(tmp_path / "fm")
    path = d / FILES[2]
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(DataError, match="truncated IDX file"):
        load_dataset("fashion_mnist", str(d))


def test_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(b"plain text")
    with pytest.raises(DataError, match="not a readable gzip file"):
        read_idx(path, 2051)
