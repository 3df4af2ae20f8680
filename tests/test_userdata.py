"""The user's own data, through the CLI into temporary SQLite files: an ``.npz`` of real
Fashion-MNIST images, class folders of PNGs written from them (grayscale, and RGB copies),
feature vectors (scikit-learn's breast-cancer set), and every bad input: exit 2, one line,
nothing stored."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest

from hpo.config import DataSettings
from hpo.data import load_dataset, prepare
from hpo.errors import DataError
from hpo.userdata import load_npz
from tests.conftest import run_cli
from tests.test_storage import one_error_line

N_TRAIN, N_TEST = 3000, 500


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fashion.npz (3,000 + 500 real images), features.npz (breast cancer, no test set), and
    class folders of PNGs: gray/ (train/ and test/, 28x28) and rgb/ (RGB copies, one level)."""
    from PIL import Image
    from sklearn.datasets import load_breast_cancer

    root = tmp_path_factory.mktemp("userdata")
    fm = load_dataset("fashion_mnist")
    np.savez(
        root / "fashion.npz",
        x_train=fm.x_train[:N_TRAIN],
        y_train=fm.y_train[:N_TRAIN],
        x_test=fm.x_test[:N_TEST],
        y_test=fm.y_test[:N_TEST],
    )
    cancer = load_breast_cancer()
    x = (cancer.data - cancer.data.mean(0)) / cancer.data.std(0)
    np.savez(root / "features.npz", x_train=x.astype(np.float32), y_train=cancer.target)
    for part, xs, ys in (("train", fm.x_train[:600], fm.y_train[:600]), ("test", fm.x_test[:100], fm.y_test[:100])):
        for i, (image, label) in enumerate(zip(xs, ys, strict=True)):
            for tree, mode in (("gray", "L"), ("rgb", "RGB")):
                folder = root / tree / part / f"class_{label}" if tree == "gray" else root / tree / f"class_{label}"
                if tree == "rgb" and part == "test":
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).convert(mode).save(folder / f"{i}.png")
    return root


def study_file(tmp_path: Path, data_table: str, *, family: str = "dense", space: str = "", name: str = "mine") -> Path:
    spaces = {
        "dense": "[space.dense]\nlayers = 1\nunits = [16, 32]\nlearning_rate = { low = 1e-3, high = 1e-2, log = true }\nbatch_size = 64\n",
        "inception": (
            "[space.inception]\nstem_filters = 8\nstages = 2\nblocks = 1\nfilters_1x1 = 8\nfilters_3x3 = 8\n"
            "down_filters = 16\nbatchnorm = true\nlearning_rate = 3e-3\nbatch_size = 64\n"
        ),
    }
    text = (
        f'[study]\nname = "{name}"\nn_trials = 2\nseed = 0\nconfirm_seeds = 0\npruner = "none"\n\n[data]\n{data_table}\n\n'
        f'[objective]\ntarget = 0.99\nmax_epochs = 2\n\n[model]\nfamily = "{family}"\n\n{space or spaces[family]}'
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def run_study(tmp_path: Path, study: Path, *extra: str):
    return run_cli("study", str(study), "--storage", f"sqlite:///{tmp_path / 's.db'}", "--no-progress", *extra)


def trials(tmp_path: Path, name: str = "mine") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 's.db'}").get_trials()


def dump(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as c:
        return list(c.iterdump())


# --------------------------------------------------------------------------------------------
# Runs


def test_npz_study_records_its_file_and_refuses_changed_data(data: Path, tmp_path: Path) -> None:
    npz = tmp_path / "fashion.npz"
    npz.write_bytes((data / "fashion.npz").read_bytes())
    study = study_file(tmp_path, f'dataset = "npz"\npath = "{npz}"')
    out = run_study(tmp_path, study)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"'{npz}' (2700 train / 300 validation)" in out.stdout
    done = trials(tmp_path)
    assert [t.state for t in done] == [optuna.trial.TrialState.COMPLETE] * 2
    tiny = run_study(tmp_path, study_file(tmp_path, 'dataset = "fashion_mnist"\ntrain_size = 600', name="bundled"))
    assert tiny.returncode == 0, tiny.stderr[-3000:]
    assert set(done[0].user_attrs) == set(trials(tmp_path, "bundled")[0].user_attrs)  # the same record as bundled data
    s = optuna.load_study(study_name="mine", storage=f"sqlite:///{tmp_path / 's.db'}")
    identity = s.user_attrs["hpo"]["identity"]
    assert identity["data.path"] == str(npz) and len(identity["data.sha256"]) == 64
    assert s.user_attrs["classes"] == list(range(10))
    from hpo.config import read_config
    from hpo.note import study_note

    assert f"`{npz}`, SHA-256 `{identity['data.sha256']}`" in study_note(read_config(study))
    report = run_cli("report", "mine", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr[-3000:]
    assert "test accuracy" in report.stdout

    arrays = dict(np.load(npz))
    arrays["y_test"][0] = (arrays["y_test"][0] + 1) % 10  # one label of one array
    np.savez(npz, **arrays)
    before = dump(tmp_path / "s.db")
    line = one_error_line(run_study(tmp_path, study), "data.path", str(npz), "changed since study 'mine'")
    assert "SHA-256" in line
    assert dump(tmp_path / "s.db") == before


def test_image_folders_grayscale_with_test_folder_and_rgb_resized_for_inception(data: Path, tmp_path: Path) -> None:
    gray = run_study(tmp_path, study_file(tmp_path, f'dataset = "images"\npath = "{data / "gray"}"\ncolor_mode = "grayscale"'))
    assert gray.returncode == 0, gray.stderr[-3000:]
    assert "(540 train / 60 validation)" in gray.stdout
    split = prepare(DataSettings(dataset="images", path=str(data / "gray"), color_mode="grayscale"))
    assert split.image_shape == (28, 28, 1) and len(split.x_test) == 100 and split.n_classes == 10
    fm = load_dataset("fashion_mnist")
    read = sorted(row.tobytes() for row in (split.x_test[..., 0] * 255).round().astype(np.uint8))
    assert read == sorted(row.tobytes() for row in fm.x_test[:100])  # lossless PNGs, each read once
    assert split.classes == tuple(f"class_{c}" for c in range(10))

    rgb = study_file(
        tmp_path,
        f'dataset = "images"\npath = "{data / "rgb"}"\nimage_size = [32, 32]\ncolor_mode = "rgb"',
        family="inception",
        name="rgb",
    )
    out = run_study(tmp_path, rgb)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "has no test set: 60 of its 600 examples are held out" in out.stdout
    done = trials(tmp_path, "rgb")
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in done)
    from hpo import models
    from hpo.config import read_config
    from hpo.space import params_from_trial

    params = params_from_trial(read_config(rgb), done[0])
    built = models.build(params, (32, 32, 3), 10)
    assert built.input_shape == (None, 32, 32, 3)
    assert done[0].user_attrs["n_params"] == built.count_params() == models.count_params(params, (32, 32, 3), 10)


def test_feature_vectors_train_dense_and_are_refused_for_inception(data: Path, tmp_path: Path) -> None:
    table = f'dataset = "npz"\npath = "{data / "features.npz"}"'
    out = run_study(tmp_path, study_file(tmp_path, table))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "has no test set: 57 of its 569 examples are held out" in out.stdout
    for t in trials(tmp_path):  # 30 features -> units -> 2 classes
        assert t.user_attrs["n_params"] == 30 * t.params["units_l0"] + t.params["units_l0"] + t.params["units_l0"] * 2 + 2
    one_error_line(
        run_study(tmp_path, study_file(tmp_path, table, family="inception", name="inc")),
        "model.family",
        "feature vectors of 30 values",
    )
    assert "inc" not in optuna.get_all_study_names(f"sqlite:///{tmp_path / 's.db'}")


def test_labels_are_mapped_and_one_hot_accepted(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((40, 5)).astype(np.float32)
    labels = np.array([10, 30, 20, 30] * 10)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=labels)
    ds = load_npz(str(tmp_path / "a.npz"))
    assert ds.classes == (10, 20, 30)
    assert list(ds.y_train[:4]) == [0, 2, 1, 2]
    np.savez(tmp_path / "b.npz", x_train=x, y_train=np.eye(4)[[0, 2, 3, 2] * 10])
    hot = load_npz(str(tmp_path / "b.npz"))
    assert hot.classes == (0, 2, 3) and list(hot.y_train[:4]) == [0, 1, 2, 1]  # one-hot rows: the columns that occur
    np.savez(tmp_path / "c.npz", x_train=x, y_train=labels.astype(np.float64))
    assert load_npz(str(tmp_path / "c.npz")).classes == (10, 20, 30)  # whole floats, as pandas saves them


# --------------------------------------------------------------------------------------------
# Bad input: exit 2, one line naming the file and the array, nothing stored


def _npz(tmp_path: Path, **arrays) -> str:
    rng = np.random.default_rng(0)
    base = {"x_train": rng.integers(0, 256, (50, 8, 8), dtype=np.uint8), "y_train": np.arange(50) % 3}
    base.update(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return str(path)


def _nan_features() -> np.ndarray:
    x = np.zeros((50, 4), np.float32)
    x[7, 2] = np.nan
    return x


NPZ_CASES = {
    "no x_train": ({"x_train": None}, "has no array 'x_train'"),
    "no y_train": ({"y_train": None}, "has no array 'y_train'"),
    "lengths": ({"y_train": np.arange(49) % 3}, "y_train has 49 labels but x_train has 50 examples"),
    "NaN": ({"x_train": _nan_features()}, "x_train holds NaN or infinite values (the first in example 7)"),
    "single class": ({"y_train": np.zeros(50, int)}, "y_train holds a single class (0)"),
    "fractional labels": ({"y_train": np.linspace(0, 1, 50)}, "labels must be integers"),
    "string labels": ({"y_train": np.array(["a", "b"] * 25)}, "labels must be integers"),
    "x_test alone": ({"x_test": np.zeros((5, 8, 8), np.uint8)}, "has x_test but no y_test"),
    "test shape": ({"x_test": np.zeros((5, 9, 9), np.uint8), "y_test": np.zeros(5, int)}, "x_test's examples are (9, 9)"),
    "unseen test label": ({"x_test": np.zeros((5, 8, 8), np.uint8), "y_test": np.full(5, 7)}, "y_test holds label 7"),
    "5-D": ({"x_train": np.zeros((50, 2, 2, 2, 2), np.float32)}, "x_train has shape (50, 2, 2, 2, 2)"),
    "pixels out of range": ({"x_train": np.full((50, 8, 8), 300)}, "x_train holds integers from 300 to 300"),
    "not one-hot": ({"y_train": np.full((50, 3), 0.5)}, "is not one-hot"),
    "objects": ({"x_train": np.array([[1], "a"] * 25, dtype=object)}, "x_train holds Python objects"),
}


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_bad_npz_is_one_line_and_nothing_is_stored(case: str, tmp_path: Path) -> None:
    arrays, needle = NPZ_CASES[case]
    path = _npz(tmp_path, **arrays)
    out = run_study(tmp_path, study_file(tmp_path, f'dataset = "npz"\npath = "{path}"'))
    one_error_line(out, path, needle)
    assert not (tmp_path / "s.db").exists()


def _write_png(path: Path, size=(8, 8), mode="L") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path)


def _folder_case(case: str, root: Path) -> str:
    for c in ("a", "b"):
        for i in range(3):
            _write_png(root / c / f"{i}.png")
    if case == "corrupt file":
        (root / "b" / "2.png").write_bytes((root / "b" / "1.png").read_bytes()[:30])
        return "'" + str(root / "b" / "2.png") + "' is not a readable image"
    if case == "text as png":
        (root / "a" / "0.png").write_text("not an image")
        return "'" + str(root / "a" / "0.png") + "' is not a readable image"
    if case == "empty class folder":
        (root / "c").mkdir()
        return f"class folder '{root / 'c'}' holds no image"
    if case == "mixed sizes":
        _write_png(root / "b" / "big.png", size=(9, 8))
        return "images of different sizes"
    if case == "one class":
        for f in (root / "b").iterdir():
            f.unlink()
        (root / "b").rmdir()
        return "needs a sub-folder per class, at least two; found only 'a'"
    if case == "a file, not a folder":
        return "is a file, not a folder"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["corrupt file", "text as png", "empty class folder", "mixed sizes", "one class", "a file, not a folder"]
)
def test_bad_image_folder_is_one_line_and_nothing_is_stored(case: str, tmp_path: Path) -> None:
    root = tmp_path / "images"
    needle = _folder_case(case, root)
    path = root / "a" / "0.png" if case == "a file, not a folder" else root
    out = run_study(tmp_path, study_file(tmp_path, f'dataset = "images"\npath = "{path}"'))
    one_error_line(out, "data.path", needle)
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ('dataset = "npz"', "data.path: data.dataset = 'npz' needs data.path"),
        ('dataset = "npz"\npath = "/nonexistent/x.npz"', "data.path: '/nonexistent/x.npz' does not exist"),
        ('dataset = "images"\npath = "/nonexistent"', "data.path: '/nonexistent' does not exist"),
        ('dataset = "npz"\npath = "x.npz"\nimage_size = [8, 8]', "data.image_size: is for data.dataset = 'images'"),
        ('dataset = "images"\npath = "x"\nimage_size = [0, 8]', "data.image_size: must be [height, width]"),
        ('dataset = "images"\npath = "x"\ncolor_mode = "rgba"', "data.color_mode: unknown value 'rgba'"),
        ('dataset = "fashion_mnist"\npath = "x.npz"', "data.path: is for data.dataset = 'npz' or 'images'"),
        ('dataset = "npz"\npath = "x.npz"\ndata_dir = "d"', "data.data_dir: is for the IDX files of fashion_mnist and mnist"),
    ],
)
def test_bad_data_settings(table: str, needle: str, tmp_path: Path) -> None:
    one_error_line(run_study(tmp_path, study_file(tmp_path, table)), needle)
    assert not (tmp_path / "s.db").exists()


def test_npz_path_that_is_not_an_npz(tmp_path: Path) -> None:
    (tmp_path / "text.npz").write_text("x_train,y_train\n1,2\n")
    np.save(tmp_path / "one.npy", np.zeros(3))
    for path, needle in ((tmp_path / "text.npz", "is not a readable NumPy .npz file"), (tmp_path / "one.npy", "holds one array")):
        one_error_line(run_study(tmp_path, study_file(tmp_path, f'dataset = "npz"\npath = "{path}"')), str(path), needle)
    with pytest.raises(DataError, match="is a folder"):
        load_npz(str(tmp_path))
    assert not (tmp_path / "s.db").exists()
