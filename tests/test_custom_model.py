"""The custom family: the user's own builder (``model.family = "custom"``, ``model.builder``).

The space's free keys are parsed in-process; the studies run through the CLI as real
subprocesses in a temporary folder holding the builder's module (imported from the working
folder): a short Fashion-MNIST study records what a dense one records, every way a builder can
be wrong is exit 2 with one line and nothing stored, and ``objective.max_params`` applies.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.api import load_config
from hpo.config import Choice, Fixed, Range
from hpo.errors import ConfigError
from hpo.space import distributions, grid_search_space, probe_params, sample
from tests.conftest import REPO, cli_env, run_cli
from tests.test_storage import one_error_line

BUILDER = """\
import keras

CALLS = []


def build(params, input_shape, n_classes):
    # hpo's contract, checked where it is kept: a plain dict of the free keys, a tuple, an int.
    assert type(params) is dict and set(params) == {"filters", "kernel", "units", "activation"}, params
    assert type(input_shape) is tuple and type(n_classes) is int, (input_shape, n_classes)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(params["filters"], params["kernel"], padding="same", activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(params["units"], activation=params["activation"])(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def raising(params, input_shape, n_classes):
    raise ValueError("no filters today")


def not_a_model(params, input_shape, n_classes):
    return "a model"


def five_units(params, input_shape, n_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")])


NOT_CALLABLE = 42
"""

SPACE = """\
[space.custom]
filters = [4, 8]
kernel = { low = 2, high = 3 }
units = 16
activation = ["relu", "tanh"]
learning_rate = { low = 1e-3, high = 1e-2, log = true }
batch_size = 64
"""
DENSE_SPACE = """\
[space.dense]
layers = 1
units = 16
learning_rate = { low = 1e-3, high = 1e-2, log = true }
batch_size = 64
"""


def study_text(
    name: str,
    *,
    family: str = "custom",
    builder: str | None = "mine:build",
    space: str = SPACE,
    data: str = 'dataset = "digits"\ntrain_size = 300',
    objective: str = "target = 0.99\nmax_epochs = 1",
    study: str = "",
) -> str:
    model = f'family = "{family}"\n' + (f'builder = "{builder}"\n' if builder is not None else "")
    return (
        f'[study]\nname = "{name}"\nsampler = "random"\npruner = "none"\nseed = 0\nn_trials = 2\nconfirm_seeds = 0\n{study}\n'
        f"[data]\n{data}\n\n[objective]\n{objective}\n\n[model]\n{model}\n{space}"
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The working folder of the runs: the builder's module, one that breaks on import."""
    (tmp_path / "mine.py").write_text(BUILDER)
    (tmp_path / "broken.py").write_text('raise RuntimeError("broken on purpose")\n')
    return tmp_path


def run_study(folder: Path, name: str, text: str, *extra: str):
    path = folder / f"{name}.toml"
    path.write_text(text)
    return run_cli("study", path.name, "--storage", "sqlite:///s.db", "--no-progress", *extra, cwd=folder)


def trials_of(folder: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 's.db'}").get_trials()


def builder_module(folder: Path):
    spec = importlib.util.spec_from_file_location(f"builder_{folder.name}", folder / "mine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def custom(space: dict) -> dict:
    """A study file's tables: the custom family with ``space`` as its ``[space.custom]``."""
    return {"model": {"family": "custom", "builder": "mine:build"}, "space": {"custom": space}}


def cfg_of(space: dict, **model) -> object:
    return load_config({"model": {"family": "custom", "builder": "mine:build", **model}, "space": {"custom": space}})


# --------------------------------------------------------------------------------------------
# The space: free keys, in-process


def test_free_keys_take_the_three_forms_with_their_kind_from_the_value() -> None:
    cfg = cfg_of(
        {
            "filters": [16, 32],
            "kernel": {"low": 2, "high": 5},
            "width": {"low": 0.5, "high": 2, "step": 0.5},
            "rate": {"low": 1e-4, "high": 1e-1, "log": True},
            "mix": [1, 2.5],
            "pool": "max",
            "residual": [True, False],
            "depth": 3,
            "batch_size": [32, 64],
        }
    )
    space = cfg.space["custom"]
    assert space["filters"] == Choice((16, 32))
    assert space["kernel"] == Range(2, 5, is_int=True)
    assert space["width"] == Range(0.5, 2.0, step=0.5)
    assert space["rate"] == Range(1e-4, 1e-1, log=True)
    assert space["mix"] == Choice((1.0, 2.5))
    assert space["pool"] == Fixed("max") and space["depth"] == Fixed(3)
    assert space["residual"] == Choice((True, False))
    assert space["batch_size"] == Choice((32, 64))  # a training key, as in every family
    assert space["learning_rate"] == Fixed(1e-3) and space["optimizer"] == Fixed("adam")
    assert cfg.model.builder == "mine:build"
    dists = distributions(cfg)
    assert dists["kernel"] == IntDistribution(2, 5)
    assert dists["rate"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["residual"] == CategoricalDistribution([True, False])
    assert "pool" not in dists and "depth" not in dists  # fixed: not Optuna parameters


def test_a_trial_gives_the_builder_the_free_keys_only() -> None:
    cfg = cfg_of({"filters": [16, 32], "kernel": {"low": 2, "high": 5}, "pool": "max", "batch_size": [32, 64]})
    p = sample(optuna.trial.FixedTrial({"filters": 32, "kernel": 4, "batch_size": 64}), cfg)
    assert p.family == "custom" and p.builder == "mine:build"
    assert p.arch == {"filters": 32, "kernel": 4, "pool": "max"}
    assert (p.batch_size, p.learning_rate, p.optimizer) == (64, 1e-3, "adam")
    assert p.fixed == {"pool": "max", "learning_rate": 1e-3, "optimizer": "adam"}
    probe = probe_params(cfg, "custom")  # what the check at start-up builds: first values, lows
    assert probe.arch == {"filters": 16, "kernel": 2, "pool": "max"} and probe.batch_size == 32


def test_searched_families_prefix_the_free_keys() -> None:
    raw = {"model": {"family": ["dense", "custom"], "builder": "mine:build"}, "space": {"custom": {"filters": [16, 32]}}}
    cfg = load_config(raw)
    assert set(distributions(cfg)) == {"family", "custom_filters"}
    assert grid_search_space(cfg) == {"family": ["dense", "custom"], "custom_filters": [16, 32]}
    p = sample(optuna.trial.FixedTrial({"family": "custom", "custom_filters": 32}), cfg)
    assert p.arch == {"filters": 32} and p.fixed["custom_learning_rate"] == 1e-3
    assert sample(optuna.trial.FixedTrial({"family": "dense"}), cfg).builder is None


@pytest.mark.parametrize(
    ("raw", "key", "says"),
    [
        ({"model": {"family": "custom"}}, "model.builder", "model.family = 'custom' needs model.builder"),
        ({"model": {"builder": "mine:build"}}, "model.builder", "'mine:build' is for model.family = 'custom', not 'dense'"),
        ({"model": {"family": "custom", "builder": "mine.build"}}, "model.builder", 'must be "package.module:function"'),
        ({"model": {"family": "custom", "builder": 3}}, "model.builder", 'must be "package.module:function", but got 3'),
        (
            {"model": {"family": "dense"}, "space": {"custom": {"filters": 8}}},
            "space.custom.filters",
            "[space.custom] is for model.family = 'custom' (with model.builder), not 'dense'",
        ),
        (custom({"Filters": 8}), "space.custom.Filters", "[a-z][a-z0-9_]*"),
        (custom({"2x": 8}), "space.custom.2x", "but got '2x'"),
        (custom({"family": "x"}), "space.custom.family", "'family' is reserved"),
        (custom({"learning_rate": "cosine"}), "space.custom.learning_rate", "training keys every family shares"),
        (custom({"optimizer": "mine"}), "space.custom.optimizer", "unknown value 'mine'"),
        (custom({"batch_size": 0}), "space.custom.batch_size", "must be in [1, 65536], but got 0"),
        (custom({"x": [1, "a"]}), "space.custom.x", "values of one kind"),
        (custom({"x": [[1, 2]]}), "space.custom.x", "values of one kind"),
        (custom({"x": []}), "space.custom.x", "empty choice list"),
        (custom({"x": [1, 1]}), "space.custom.x", "duplicate values"),
        (custom({"x": {"low": 5, "high": 2}}), "space.custom.x", "low=5 > high=2"),
        (custom({"x": {"low": 0.0, "high": 1.0, "log": True}}), "space.custom.x", "log range needs low > 0"),
        (custom({"x": {"low": 1, "high": 4, "step": 0.5}}), "space.custom.x.step", "must be an integer"),
        (custom({"x": {"low": "a", "high": 2}}), "space.custom.x.low", "must be a number"),
        (custom({"x": {"low": True, "high": False}}), "space.custom.x.low", "but got True"),
        (custom({"x": {"low": 1}}), "space.custom.x", "needs both low and high"),
        (custom({"x": {"low": 1, "high": 2, "big": 3}}), "space.custom.x.big", "unknown key"),
        (custom({"x": {"low": True, "high": 2}}), "space.custom.x.low", "but got True"),
        (custom({"x": {"a": 1}}), "space.custom.x.a", "unknown key"),
        (custom({"x": float("nan")}), "space.custom.x", "but got nan"),
        (custom({"x": [1.0, float("inf")]}), "space.custom.x", "but got inf"),
        (custom({"x": 2**64}), "space.custom.x", "must be in [-9223372036854775808, 9223372036854775807]"),
    ],
)
def test_a_bad_custom_setting_is_one_line_naming_its_key(raw: dict, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    message = str(info.value)
    assert f"{key}: " in message and says in message, message
    assert "\n" not in message


def test_enqueue_names_free_keys() -> None:
    raw = {
        "study": {"enqueue": [{"filters": 64}]},
        "model": {"family": "custom", "builder": "mine:build"},
        "space": {"custom": {"filters": [16, 32]}},
    }
    with pytest.raises(ConfigError, match=r"study.enqueue\[0\].filters: 64 is not one of 16, 32"):
        load_config(raw)


def test_a_model_keras_cannot_save_costs_only_its_artifact(tmp_path: Path) -> None:
    import keras

    from hpo.artifacts import ArtifactWarning, ArtifactWriter, make_artifact_store

    class Opaque(keras.Model):  # a lambda in __init__ and no get_config: Keras cannot serialize it
        def __init__(self, n: int, fn) -> None:
            super().__init__()
            self.fn = fn
            self.head = keras.layers.Dense(n, activation="softmax")

        def call(self, x):
            return self.head(keras.ops.reshape(self.fn(x), (-1, 64)))

    model = Opaque(10, lambda x: x)
    model(np.zeros((1, 8, 8, 1), np.float32))
    trial = optuna.create_study().ask()
    history = {"loss": [0.5], "accuracy": [0.9], "val_loss": [0.4], "val_accuracy": [0.95]}
    outcome = {"family": "custom", "stop_reason": "target", "epochs_to_target": 1, "best_val_accuracy": 0.95, "history": history}
    store = make_artifact_store(tmp_path / "artifacts")
    with pytest.warns(ArtifactWarning, match="model artifact not written: UnserializableModel: Keras cannot save this model"):
        ArtifactWriter(store, cfg_of({"filters": 8}))(trial, model, outcome)
    names = sorted(a.filename for a in optuna.artifacts.get_all_artifact_meta(trial))
    assert names == [f"trial-{trial.number:04d}-{n}" for n in ("curves.png", "history.csv", "history.json")]


# --------------------------------------------------------------------------------------------
# Real runs


@pytest.mark.slow
def test_a_custom_study_records_what_a_dense_one_does(folder: Path) -> None:
    fashion = 'dataset = "fashion_mnist"\ntrain_size = 600\nvalidation_fraction = 0.02'
    objective = "target = 0.99\nmax_epochs = 2"
    out = run_study(folder, "mine", study_text("mine", data=fashion, objective=objective))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "hpo: warning" not in out.stderr, out.stderr[-3000:]  # the model artifact included
    dense = run_study(
        folder, "plain", study_text("plain", family="dense", builder=None, space=DENSE_SPACE, data=fashion, objective=objective)
    )
    assert dense.returncode == 0, dense.stderr[-3000:]

    custom = trials_of(folder, "mine")
    assert [t.state for t in custom] == [optuna.trial.TrialState.COMPLETE] * 2
    assert set(custom[0].user_attrs) == set(trials_of(folder, "plain")[0].user_attrs)
    module = builder_module(folder)
    for t in custom:
        assert set(t.params) == {"filters", "kernel", "activation", "learning_rate"}
        attrs = t.user_attrs
        assert attrs["family"] == "custom" and attrs["stop_reason"] == "max_epochs" and attrs["epochs"] == 2
        assert attrs["fixed_params"] == {"units": 16, "optimizer": "adam", "batch_size": 64}
        assert attrs["xla"] is True  # no dropout: XLA, as for Inception nets
        arch = {k: t.params[k] for k in ("filters", "kernel", "activation")} | {"units": 16}
        assert attrs["n_params"] == module.build(arch, (28, 28, 1), 10).count_params()
        assert len(t.system_attrs["history"]["val_accuracy"]) == 2

    report = run_cli("report", "mine", "--storage", "sqlite:///s.db", "--out", "report", cwd=folder)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "test accuracy" in report.stdout and "hpo: warning" not in report.stderr, report.stdout + report.stderr
    assert (folder / "report" / "trials.csv").read_text().count("custom") >= 2


@pytest.mark.slow
def test_max_params_applies_to_a_custom_model(folder: Path) -> None:
    # digits are 8x8: units 8 make 2,166 parameters, units 256 make 68,382; the cap is between.
    space = SPACE.replace("units = 16", "units = [8, 256]").replace("filters = [4, 8]", "filters = 4")
    space = space.replace("kernel = { low = 2, high = 3 }", "kernel = 2").replace('["relu", "tanh"]', '"relu"')
    text = study_text(
        "capped",
        space=space,
        objective="target = 0.99\nmax_epochs = 1\nmax_params = 10000",
        study="enqueue = [{units = 8}, {units = 256}]",
    )
    out = run_study(folder, "capped", text, "--no-artifacts")
    assert out.returncode == 0, out.stderr[-3000:]
    small, large = trials_of(folder, "capped")
    assert (small.params["units"], large.params["units"]) == (8, 256)
    assert small.user_attrs["stop_reason"] == "max_epochs" and small.user_attrs["n_params"] == 2166
    assert large.state == optuna.trial.TrialState.COMPLETE
    assert large.user_attrs["stop_reason"] == "too_large" and large.user_attrs["n_params"] == 68382
    assert large.user_attrs["epochs"] == 0 and large.system_attrs["history"] == {}
    assert large.value == pytest.approx(1 + 1 + 0.99)  # the worst not-reached cost: max_epochs + 1 + target


# --------------------------------------------------------------------------------------------
# Bad builders: exit 2, one line naming model.builder, nothing stored


@pytest.fixture
def store(folder: Path) -> bytes:
    """The run's SQLite file, holding a study made by plain Optuna; returns its bytes."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 's.db'}")
    optuna.create_study(storage=storage, study_name="plain").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    storage.engine.dispose()
    return (folder / "s.db").read_bytes()


BAD = {
    "module-missing": ({"builder": "nowhere:build"}, "'nowhere:build': no module named 'nowhere'"),
    "module-raises": ({"builder": "broken:build"}, "importing module 'broken' raised RuntimeError: broken on purpose"),
    "function-missing": ({"builder": "mine:absent"}, "'mine:absent': mine has no attribute 'absent'"),
    "not-callable": ({"builder": "mine:NOT_CALLABLE"}, "mine.NOT_CALLABLE is int 42, not a function"),
    "builder-raises": ({"builder": "mine:raising"}, "raised ValueError: no filters today"),
    "not-a-model": ({"builder": "mine:not_a_model"}, "returned str 'a model', not a keras.Model"),
    "wrong-units": ({"builder": "mine:five_units"}, "output has 5 units, but the data has 10 classes"),
    "builder-missing": ({"builder": None}, "model.family = 'custom' needs model.builder"),
    "builder-with-dense": ({"family": "dense", "space": DENSE_SPACE}, "'mine:build' is for model.family = 'custom', not 'dense'"),
    "training-key-clash": (
        {"space": SPACE.replace("{ low = 1e-3, high = 1e-2, log = true }", '"cosine"')},
        "must be a number in (0, 1e+38], but got 'cosine' (learning_rate, optimizer, batch_size are the training keys",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_builder_is_one_line_and_nothing_is_stored(folder: Path, store: bytes, case: str) -> None:
    changes, says = BAD[case]
    out = run_study(folder, "bad", study_text("bad", **changes))
    key = "space.custom.learning_rate" if case == "training-key-clash" else "model.builder"
    line = one_error_line(out, f"bad.toml: {key}: ", says)
    if key == "model.builder" and case != "builder-missing":
        assert repr(changes.get("builder", "mine:build")) in line
    assert (folder / "s.db").read_bytes() == store
    assert not (folder / "artifacts").exists() and not (folder / "studies").exists()


@pytest.mark.slow
def test_a_bad_builder_stops_workers_before_the_study_exists(folder: Path, store: bytes) -> None:
    out = run_study(folder, "bad", study_text("bad", builder="mine:raising"), "--workers", "2")
    one_error_line(out, "bad.toml: model.builder: 'mine:raising': builder(", "raised ValueError: no filters today")
    assert (folder / "s.db").read_bytes() == store


@pytest.mark.slow
def test_the_hpo_script_imports_the_builder_from_the_working_folder(folder: Path, store: bytes) -> None:
    script = Path(sys.executable).parent / "hpo"
    assert script.exists(), f"no hpo script beside {sys.executable}: install the project (pip install -e .)"
    import subprocess

    (folder / "bad.toml").write_text(study_text("bad", builder="mine:five_units"))
    env = cli_env()
    env["PYTHONPATH"] = str(REPO)  # not the working folder: hpo must add it
    out = subprocess.run(
        [str(script), "study", "bad.toml", "--storage", "sqlite:///s.db"], cwd=folder, env=env, capture_output=True, text=True
    )
    one_error_line(out, "'mine:five_units'", "output has 5 units")
    assert (folder / "s.db").read_bytes() == store
