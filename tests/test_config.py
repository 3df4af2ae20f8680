"""Study-file validation: every bad input is one line naming the file, the key and the value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hpo.api import load_config
from hpo.config import Choice, Fixed, Range, parse_override
from hpo.errors import ConfigError
from tests.conftest import STUDIES

GOOD = """
[study]
name = "t"
[objective]
target = 0.8
max_epochs = 3
[space.dense]
layers = [1, 2]
units = {low = 16, high = 64, log = true}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_ready_study_files_are_valid() -> None:
    for path in sorted(STUDIES.glob("*.toml")):
        cfg = load_config(path)
        assert cfg.study.name
        assert 0 < cfg.objective.target <= 1


def test_good_file_parses_into_specs(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    dense = cfg.space["dense"]
    assert dense["layers"] == Choice((1, 2))
    assert dense["units"] == Range(16, 64, log=True, step=None, is_int=True)
    assert dense["activation"] == Fixed("relu")
    assert cfg.objective.monitor == "val_accuracy"
    assert cfg.model.family == ("dense",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.objective.target = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[objective]\ntarget = 1.5\n", "objective.target", "1.5"),
        ("[objective]\ntarget = 0\n", "objective.target", "(0, 1]"),
        ("[objective]\nmax_epochs = 0\n", "objective.max_epochs", "must be in [1, 1000], but got 0"),
        ("[objective]\nmax_epochs = 'ten'\n", "objective.max_epochs", "'ten'"),
        ("[objective]\nmonitor = 'loss'\n", "objective.monitor", "'loss'"),
        ("[objectve]\ntarget = 0.9\n", "objectve", "did you mean 'objective'"),
        ("[objective]\ntarge = 0.9\n", "objective.targe", "did you mean 'target'"),
        ("[space.dense]\nunitz = 3\n", "space.dense.unitz", "did you mean 'units'"),
        ("[space.dense]\nunits = []\n", "space.dense.units", "empty choice list"),
        ("[space.dense]\nunits = {low = 64, high = 16}\n", "space.dense.units", "low=64 > high=16"),
        ("[space.dense]\ndropout = {low = 0.0, high = 0.5, log = true}\n", "space.dense.dropout", "log range needs low > 0"),
        ("[space.dense]\nactivation = 'relux'\n", "space.dense.activation", "'relux'"),
        ("[space.dense]\ninitializer = ['he_normal', 'xavier']\n", "space.dense.initializer", "'xavier'"),
        ("[space.dense]\noptimizer = 'adamm'\n", "space.dense.optimizer", "did you mean 'adam'"),
        ("[space.dense]\nunits = 'many'\n", "space.dense.units", "'many'"),
        ("[space.dense]\nunits = 12.5\n", "space.dense.units", "12.5"),
        ("[space.dense]\nbatchnorm = 'yes'\n", "space.dense.batchnorm", "'yes'"),
        ("[space.dense]\ndropout = 1.0\n", "space.dense.dropout", "must be in [0, 1), but got 1.0"),
        ("[space.dense]\nactivation = {low = 1, high = 2}\n", "space.dense.activation", "range needs a numeric key"),
        ("[space.dense]\nunits = {low = 1}\n", "space.dense.units", "both low and high"),
        ("[space.dense]\nunits = {low = 1, high = 8, stepp = 2}\n", "space.dense.units.stepp", "did you mean 'step'"),
        ("[data]\ndataset = 'cifar'\n", "data.dataset", "'cifar'"),
        ("[data]\nvalidation_fraction = 1.0\n", "data.validation_fraction", "(0, 1)"),
        ("[data]\ntrain_size = -5\n", "data.train_size", "must be in [0, 10000000], but got -5"),
        ("[study]\nsampler = 'bayes'\n", "study.sampler", "'bayes'"),
        ("[study]\npruner = 'medain'\n", "study.pruner", "'medain'"),
        (
            "[study]\npruner = 'median'\npruner_options = {n_startup = 3}\n",
            "study.pruner_options.n_startup",
            "did you mean 'n_startup_trials'",
        ),
        ("[study]\npruner = 'percentile'\npruner_options = {percentile = 150.0}\n", "study.pruner_options", "percentile"),
        (
            "[study]\nsampler = 'grid'\n[space.dense]\nlearning_rate = {low = 1e-4, high = 1e-2}\n",
            "space.dense.learning_rate",
            "grid sampler",
        ),
        ("[model]\nfamily = 'resnet'\n", "model.family", "'resnet'"),
        ("[model]\nfamily = []\n", "model.family", "empty"),
        ("[space.cnn]\nlayers = 1\n", "space.cnn", "unknown key"),
        ("study = 3\n", "study", "must be a table"),
        ("[objective]\nmax_params = -1\n", "objective.max_params", "must be in [0, 1000000000], but got -1"),
        ("[objective]\nmax_params = 1e6\n", "objective.max_params", "must be an integer in [0, 1000000000], but got 1000000.0"),
        ("[study]\nmax_consecutive_failures = -2\n", "study.max_consecutive_failures", "must be in [0, 1000000], but got -2"),
        ("[study]\nmax_consecutive_failures = 'five'\n", "study.max_consecutive_failures", "'five'"),
        ("[study]\nseed = 1\ndeterministic_ops = 1\n", "study.deterministic_ops", "true or false, but got 1"),
        ("[study]\ndeterministic_ops = true\n", "study.deterministic_ops", "needs study.seed"),
    ],
)
def test_bad_input_names_file_key_and_value(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    message = error_of(tmp_path, text)
    assert f": {key}:" in message, message
    assert fragment in message, message


def test_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[study]\nname = 't'\n[objective]\ntarget = = 0.9\n")
    assert "TOML syntax error" in message
    assert "line 4" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="study file not found"):
        load_config(tmp_path / "nope.toml")


def test_overrides_parse_toml_values(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    cfg = load_config(
        path,
        [
            'model.family=["dense"]',
            "space.dense.units={low=32, high=512, log=true}",
            "objective.target=0.9",
            "space.dense.activation=gelu",
            "study.name=other",
        ],
    )
    assert cfg.space["dense"]["units"] == Range(32, 512, log=True, step=None, is_int=True)
    assert cfg.objective.target == 0.9
    assert cfg.space["dense"]["activation"] == Fixed("gelu")
    assert cfg.study.name == "other"


def test_override_errors_say_they_came_from_set(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD, ("objective.target=1.5",))
    assert "(--set)" in message and "objective.target" in message and "1.5" in message


@pytest.mark.parametrize("item", ["objective.target", "target=0.9", "objective.target=[1,"])
def test_malformed_overrides(item: str) -> None:
    with pytest.raises(ConfigError):
        parse_override(item)


def test_bare_word_is_a_string() -> None:
    assert parse_override("space.dense.optimizer=nadam") == (["space", "dense", "optimizer"], "nadam")
    assert parse_override("objective.max_epochs=4") == (["objective", "max_epochs"], 4)


def test_fault_settings_defaults_and_values(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.objective.max_params == 20_000_000
    assert cfg.study.max_consecutive_failures == 5
    assert cfg.study.deterministic_ops is False
    over = ("objective.max_params=0", "study.max_consecutive_failures=0", "study.seed=3", "study.deterministic_ops=true")
    cfg = load_config(write(tmp_path, GOOD), over)
    assert (cfg.objective.max_params, cfg.study.max_consecutive_failures, cfg.study.deterministic_ops) == (0, 0, True)


SPACE = """
[study]
name = "t"
[model]
family = "dense"
[space.dense]
layers = {low = 1, high = 3}
units = {low = 16, high = 512, log = true}
activation = ["relu", "gelu"]
dropout = {low = 0.0, high = 0.5, step = 0.1}
batch_size = [32, 64]
optimizer = "adam"
"""


def with_enqueue(tables: str) -> str:
    return SPACE.replace('name = "t"', f'name = "t"\nenqueue = {tables}')


def test_enqueue_takes_tables_inside_the_space(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, with_enqueue('[{layers = 2, units_l0 = 178, units_l1 = 512, activation = "relu"}, {}]')))
    assert [dict(e) for e in cfg.study.enqueue] == [{"layers": 2, "units_l0": 178, "units_l1": 512, "activation": "relu"}, {}]
    # a key the space fixes may be given with its value
    assert load_config(write(tmp_path, with_enqueue('[{optimizer = "adam", dropout = 0.2}]'))).study.enqueue


@pytest.mark.parametrize(
    ("tables", "key", "says"),
    [
        ("[{layers = 4}]", "study.enqueue[0].layers", "outside the space's range 1 to 3"),
        ("[{}, {units_l0 = 8}]", "study.enqueue[1].units_l0", "8 is outside"),
        ('[{activation = "tanh"}]', "study.enqueue[0].activation", "'tanh' is not one of 'relu', 'gelu'"),
        ("[{batch_size = 48}]", "study.enqueue[0].batch_size", "48 is not one of 32, 64"),
        ("[{dropout = 0.25}]", "study.enqueue[0].dropout", "not on the range's step"),
        ("[{layers = 1.5}]", "study.enqueue[0].layers", "must be an integer"),
        ('[{layers = "two"}]', "study.enqueue[0].layers", "must be a number"),
        ('[{optimizer = "sgd"}]', "study.enqueue[0].optimizer", "the space fixes it to 'adam'"),
        ("[{layers = 2, units_l2 = 64}]", "study.enqueue[0].units_l2", "not used by a trial"),
        ("[{unit = 64}]", "study.enqueue[0].unit", "not a parameter of the space"),
        ("[1, 2]", "study.enqueue", "must be a list of parameter tables"),
        ('"x"', "study.enqueue", "must be a list of parameter tables"),
    ],
)
def test_enqueue_outside_the_space_names_the_table_and_key(tmp_path: Path, tables: str, key: str, says: str) -> None:
    message = error_of(tmp_path, with_enqueue(tables))
    assert f"{key}:" in message and says in message, message


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("study.confirm_seeds=-1", "study.confirm_seeds: must be in [0, 50], but got -1"),
        ("study.confirm_seeds=51", "study.confirm_seeds: must be in [0, 50], but got 51"),
        ("objective.cap=1", "objective.cap: must be true or false"),
        ("objective.cap_slack=-1", "objective.cap_slack: must be in [0, 1000], but got -1"),
        ("objective.cap_slack=99", "objective.cap_slack: must be <= objective.max_epochs"),
        ("objective.cap_slack=1.5", "objective.cap_slack: must be an integer in [0, 1000], but got 1.5"),
    ],
)
def test_confirmation_and_capping_settings_are_checked(tmp_path: Path, override: str, says: str) -> None:
    assert says in error_of(tmp_path, GOOD, (override,))


def test_confirmation_and_capping_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.study.confirm_seeds == 3 and cfg.study.confirming
    assert cfg.objective.cap and cfg.objective.cap_slack == 1
    off = load_config(write(tmp_path, GOOD), ("study.confirm_seeds=1", "objective.cap=false"))
    assert not off.study.confirming and not off.objective.cap
