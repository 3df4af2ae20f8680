"""Every number has a bound, checked before anything is stored; a study file is any path a user
can type; a range's step divides it; a resumed study's sampler seed stays in range at any size.

Most cases run in-process through :func:`hpo.load_config` (a dict or a file) and the CLI's
parser; the few that need a process of their own (a FIFO, a resumed study) run the CLI.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest

from hpo.api import load_config
from hpo.cli import build_parser
from hpo.config import (
    BOUNDS,
    MAX_CHOICES,
    MAX_ENQUEUE,
    MAX_GRID_POINTS,
    MAX_SEED,
    MAX_STUDY_FILE_BYTES,
    MAX_WORKERS,
    RUN_BOUNDS,
    SPACE_SCHEMAS,
    DataSettings,
    derive_seed,
    parse_config,
    parse_override,
)
from hpo.errors import ConfigError, DataError, HpoError
from hpo.search import RESUME_SEED_STRIDE, make_sampler, option_types, sampler_seed
from hpo.space import distributions, grid_search_space
from tests.conftest import REPO, cli_env, run_cli

BASE = {
    "study": {"name": "t", "sampler": "random", "pruner": "none", "seed": 0, "n_trials": 1},
    "data": {"dataset": "digits", "train_size": 300},
    "objective": {"target": 0.99, "max_epochs": 1},
    "space": {"dense": {"units": [16, 32], "batch_size": 64}},
}
FLOAT_KEYS = {"study.timeout", "data.validation_fraction", "objective.target"}


def config(*overrides: str, base: dict | None = None):
    return load_config(copy.deepcopy(base or BASE), list(overrides))


def refusal(*overrides: str, base: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        config(*overrides, base=base)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


# --------------------------------------------------------------------------------------------
# [study], [data], [objective]: each number within BOUNDS


def _outside(key: str) -> list:
    bound = BOUNDS[key]
    low, high = bound.minimum, bound.maximum
    if key in FLOAT_KEYS:
        below = low if bound.minimum_open else low - 0.5
        above = high if bound.maximum_open else high + 0.5
        return [below, above, math.inf, -math.inf, math.nan, True]
    below = low if bound.minimum_open else low - 1
    return [int(below), int(high) + 1, 2**63 - 1, -(2**63), True, 10**400]


OUTSIDE = [(key, value) for key in BOUNDS for value in _outside(key)]


@pytest.mark.parametrize(("key", "value"), OUTSIDE, ids=[f"{k}={v!r}"[:60] for k, v in OUTSIDE])
def test_a_number_outside_its_range_is_refused_naming_the_range(key: str, value) -> None:
    section, name = key.split(".")
    raw = copy.deepcopy(BASE)
    raw.setdefault(section, {})[name] = value
    message = refusal(base=raw)
    assert f"<dict>: {key}: must be" in message, message
    assert f"in {BOUNDS[key]}, but got" in message, message
    if value == 10**400:
        assert "(401 characters)" in message  # not 401 digits on the terminal


def _ends(key: str) -> list:
    bound = BOUNDS[key]
    ends = [e for e, open_ in ((bound.minimum, bound.minimum_open), (bound.maximum, bound.maximum_open)) if not open_]
    if key == "study.grace_period":  # also longer than study.heartbeat_interval (>= 1)
        ends = [bound.maximum]
    return [e if key in FLOAT_KEYS else int(e) for e in ends]


ENDS = [(key, value) for key in BOUNDS for value in _ends(key)]


@pytest.mark.parametrize(("key", "value"), ENDS, ids=[f"{k}={v!r}" for k, v in ENDS])
def test_both_ends_of_a_closed_range_are_accepted(key: str, value) -> None:
    extra = ("objective.max_epochs=1000",) if key == "objective.cap_slack" else ()
    cfg = config(f"{key}={value!r}", *extra)
    section, name = key.split(".")
    got = getattr(getattr(cfg, section), name)
    assert got == value or (key == "study.timeout" and value == 0 and got is None)


def test_every_number_of_the_study_file_has_a_bound_and_a_readme_row() -> None:
    """The numeric keys of [study], [data], [objective] and of every space are all bounded, and
    the README's table gives each the range the code checks."""
    from hpo.config import _SECTION_KEYS

    numeric = {f"{s}.{k}" for s, keys in _SECTION_KEYS.items() for k in keys} - {
        "study.name",
        "study.sampler",
        "study.sampler_options",
        "study.pruner",
        "study.pruner_options",
        "study.deterministic_ops",
        "study.enqueue",
        "data.dataset",
        "data.data_dir",
        "data.path",
        "data.color_mode",
        "data.image_size",  # [height, width], each in [1, 8192]: tests/test_userdata.py
        "objective.monitor",
        "objective.cap",
        "model.family",
        "model.builder",
    }
    assert numeric == set(BOUNDS)
    readme = (REPO / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        m = re.match(r"^\| ((?:`[^`]+`(?:, )?)+) \| ([\[(][^ ]+, [^ ]+?[\])])", line)
        if m:
            for key in re.findall(r"`([^`]+)`", m.group(1)):
                rows[key] = m.group(2)
    for key, bound in BOUNDS.items():
        assert rows.get(key) == str(bound), key
    for name, bound in RUN_BOUNDS.items():
        assert rows.get("--" + name.replace("_", "-")) == str(bound), name
    for family, schema in SPACE_SCHEMAS.items():
        for key, spec in schema.items():
            if spec.kind in ("int", "float"):
                assert spec.bound is not None, f"space.{family}.{key}"
                assert rows.get(key) == str(spec.bound), f"space.{family}.{key}"


# --------------------------------------------------------------------------------------------
# The space: every numeric key, as a value, in a list and at both ends of a range

SPACE_KEYS = [
    (family, key, spec)
    for family, schema in SPACE_SCHEMAS.items()
    for key, spec in schema.items()
    if spec.kind in ("int", "float")
]


def _space_base(family: str) -> dict:
    raw = copy.deepcopy(BASE)
    raw["model"] = {"family": family}
    if family == "inception":
        raw["data"]["dataset"] = "fashion_mnist"  # 28x28: up to 3 stages fit
        raw["space"]["inception"] = {"stages": 1}
    if family == "custom":
        raw["model"]["builder"] = "mine:build"  # not imported while the file is read
    return raw


def _beyond(spec) -> list:
    """The nearest values outside the range: the open end itself, else one step beyond."""
    bound = spec.bound
    if spec.kind == "int":
        below, above = bound.minimum - 1, bound.maximum + 1
    else:
        below, above = math.nextafter(bound.minimum, -math.inf), math.nextafter(bound.maximum, math.inf)
    return [bound.minimum if bound.minimum_open else below, bound.maximum if bound.maximum_open else above]


BEYOND = [(f, k, s, v, form) for f, k, s in SPACE_KEYS for v in _beyond(s) for form in ("value", "list", "range")]


@pytest.mark.parametrize(
    ("family", "key", "spec", "value", "form"), BEYOND, ids=[f"{f}.{k}={v!r}-{form}" for f, k, _, v, form in BEYOND]
)
def test_a_space_number_outside_its_range_is_refused(family, key, spec, value, form) -> None:
    raw = _space_base(family)
    low_end = value < spec.bound.maximum
    if form == "value":
        given, where = value, key
    elif form == "list":
        given, where = [spec.default, value], key
    elif low_end:
        given, where = {"low": value, "high": spec.default}, f"{key}.low"
    else:
        given, where = {"low": spec.default, "high": value}, f"{key}.high"
    raw["space"].setdefault(family, {})[key] = given
    message = refusal(base=raw)
    assert f"space.{family}.{where}: must be in {spec.bound}, but got {value!r}" in message, message


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("space.dense.layers={low=1, high=1000000000}", "space.dense.layers.high: must be in [1, 64], but got 1000000000"),
        ("space.dense.units=true", "space.dense.units: must be an integer in [1, 1099511627776], but got True"),
        ("space.dense.units=1e300", "but got 1e+300"),
        ("space.dense.units=inf", "space.dense.units: must be an integer in [1, 1099511627776], but got inf"),
        ("space.dense.learning_rate=nan", "space.dense.learning_rate: must be in (0, 1e+38], but got nan"),
        ("space.dense.learning_rate=[0.001, inf]", "space.dense.learning_rate: must be in (0, 1e+38], but got inf"),
        ("space.dense.dropout={low=0.0, high=0.5, step=nan}", "space.dense.dropout.step: must be a positive number"),
        ("space.dense.dropout={low=0.0, high=0.5, step=inf}", "space.dense.dropout.step: must be a positive number"),
        ("space.dense.batch_size=[32, false]", "space.dense.batch_size: must be an integer in [1, 65536], but got False"),
        ("objective.target=true", "objective.target: must be a number in (0, 1], but got True"),
        ("study.n_trials=true", "study.n_trials: must be an integer in [0, 1000000], but got True"),
        ("study.seed=1.0", "study.seed: must be an integer in [0, 4294967295], but got 1.0"),
    ],
)
def test_booleans_non_finite_and_huge_values_are_refused(override: str, says: str) -> None:
    assert says in refusal(override)


def test_inception_filters_of_a_block_are_bounded() -> None:
    raw = _space_base("inception")
    raw["space"]["inception"].update(blocks=1, filters_3x3_s0_b0=2**40 + 1)
    assert "space.inception.filters_3x3_s0_b0: must be in [1, 1099511627776], but got 1099511627777" in refusal(base=raw)


def test_lists_and_enqueue_have_a_length_bound() -> None:
    values = list(range(1, MAX_CHOICES + 2))
    assert f"at most {MAX_CHOICES} values, but holds {MAX_CHOICES + 1}" in refusal(f"space.dense.units={values}")
    assert config(f"space.dense.units={values[:MAX_CHOICES]}")
    tables = "[" + ", ".join(["{}"] * (MAX_ENQUEUE + 1)) + "]"
    assert f"study.enqueue: may hold at most {MAX_ENQUEUE} tables" in refusal(f"study.enqueue={tables}")


# --------------------------------------------------------------------------------------------
# Steps and grids


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("space.dense.dropout={low=0, high=0.95, step=0.1}", "step 0.1 does not divide the range from 0.0 to 0.95"),
        ("space.dense.dropout={low=0.05, high=0.5, step=0.1}", "Optuna would end it at 0.45"),
        ("space.dense.units={low=16, high=100, step=16}", "step 16 does not divide the range from 16 to 100"),
        ("space.dense.units={low=16, high=24, step=32}", "Optuna would end it at 16"),
        ("space.dense.learning_rate={low=0.001, high=0.01, step=0.004}", "make high 0.009"),
    ],
)
def test_a_step_that_does_not_divide_its_range_is_refused_in_one_line(override: str, says: str) -> None:
    message = refusal(override)
    key = override.split("=")[0]
    assert f"(--set): {key}: " in message and says in message, message


@pytest.mark.parametrize(
    "override",
    [
        "space.dense.dropout={low=0.0, high=0.9, step=0.1}",
        "space.dense.dropout={low=0.0, high=0.3, step=0.1}",
        "space.dense.units={low=16, high=96, step=16}",
        "space.dense.units={low=16, high=16, step=5}",
        "space.dense.learning_rate={low=0.001, high=0.009, step=0.004}",
    ],
)
def test_a_dividing_step_is_accepted_without_optuna_warnings(override: str) -> None:
    cfg = config(override)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's "the range is not divisible by step" warning fails the test
        distributions(cfg)
        grid = grid_search_space(config(override, "study.sampler=grid", "space.dense.learning_rate=0.001"))
    if "dropout" in override:
        assert grid["dropout"][-1] == float(override.split("high=")[1].split(",")[0])
        assert all(len(repr(v)) <= 4 for v in grid["dropout"])  # 0.3, not 0.30000000000000004


def test_a_grid_is_bounded_before_it_is_built() -> None:
    grid = ("study.sampler=grid", "space.dense.learning_rate=0.001")
    too_many = refusal(*grid, "space.dense.layers={low=1, high=64}", "space.dense.units={low=1, high=65536}")
    assert "(--set): study.sampler: the grid holds about 10^" in too_many and "units_l0 65536" in too_many
    batch = [2**i for i in range(11)]  # 11 values x 9091 units: 100,001 points
    over = refusal(*grid, "space.dense.units={low=1, high=9091}", f"space.dense.batch_size={batch}")
    assert "the grid holds 100,001 points" in over and f"at most {MAX_GRID_POINTS:,}" in over
    cfg = config(*grid, "space.dense.units={low=1, high=9091}", f"space.dense.batch_size={batch[:10]}")
    assert len(grid_search_space(cfg)["units_l0"]) == 9091


# --------------------------------------------------------------------------------------------
# Sampler and pruner options: names, types and numbers, checked against Optuna's constructors


@pytest.mark.parametrize(
    ("sampler", "pruner", "options", "key", "says"),
    [
        ("tpe", "none", {"n_startup_trials": "ten"}, "sampler_options.n_startup_trials", "TPESampler takes an integer here"),
        ("tpe", "none", {"n_startup_trials": True}, "sampler_options.n_startup_trials", "takes an integer here, but got True"),
        ("tpe", "none", {"n_startup_trials": 10**7}, "sampler_options.n_startup_trials", "must be in [0, 1000000]"),
        ("tpe", "none", {"n_ei_candidates": 0}, "sampler_options.n_ei_candidates", "must be in [1, 10000], but got 0"),
        ("tpe", "none", {"prior_weight": math.nan}, "sampler_options.prior_weight", "but got nan"),
        ("tpe", "none", {"multivariate": "yes"}, "sampler_options.multivariate", "takes true or false here"),
        ("tpe", "none", {"gamma": 3}, "sampler_options.gamma", "takes a Python object here"),
        ("tpe", "none", {"seed": 3}, "sampler_options.seed", "has no option 'seed'"),
        ("random", "median", {"n_warmup_steps": 1.5}, "pruner_options.n_warmup_steps", "MedianPruner takes an integer"),
        ("random", "percentile", {"percentile": "25"}, "pruner_options.percentile", "takes a number here, but got '25'"),
        ("random", "hyperband", {"max_resource": True}, "pruner_options.max_resource", "a string or an integer here"),
        ("random", "hyperband", {"max_resource": "many"}, "pruner_options", "HyperbandPruner:"),
        ("random", "successive_halving", {"reduction_factor": 1}, "pruner_options", "SuccessiveHalvingPruner:"),
    ],
)
def test_sampler_and_pruner_options_are_checked_against_the_constructor(sampler, pruner, options, key, says) -> None:
    raw = copy.deepcopy(BASE)
    raw["study"].update(sampler=sampler, pruner=pruner)
    raw["study"]["sampler_options" if key.startswith("sampler") else "pruner_options"] = options
    message = refusal(base=raw)
    assert f": study.{key}: " in message and says in message, message


def test_good_options_are_accepted_and_hints_are_read() -> None:
    raw = copy.deepcopy(BASE)
    raw["study"].update(sampler="tpe", sampler_options={"n_startup_trials": 5, "multivariate": True, "n_ei_candidates": 48})
    raw["study"].update(pruner="percentile", pruner_options={"percentile": 25})
    assert config(base=raw).study.sampler_options["n_ei_candidates"] == 48
    hints = option_types(optuna.samplers.TPESampler)  # annotations Optuna imports only for type checkers
    assert hints["n_startup_trials"] is int and hints["multivariate"] == (bool | None)
    assert option_types(optuna.pruners.HyperbandPruner)["max_resource"] == (str | int)


# --------------------------------------------------------------------------------------------
# Flags and hpo.optimize's arguments


def flag_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(list(argv))
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


STUDY = ("study", "s.toml")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ((*STUDY, "--seed", "4294967296"), "--seed: must be in [0, 4294967295], but got 4294967296"),
        ((*STUDY, "--seed", "-1"), "--seed: must be in [0, 4294967295], but got -1"),
        ((*STUDY, "--seed", "1" * 5000), "--seed: expected a whole number, but got '111"),
        ((*STUDY, "--threads", "2147483648"), "--threads: must be in [1, 1024], but got 2147483648"),
        ((*STUDY, "--workers", str(MAX_WORKERS + 1)), f"--workers: must be in [1, {MAX_WORKERS}], but got 257"),
        ((*STUDY, "--n-trials", "1000001"), "--n-trials: must be in [0, 1000000], but got 1000001"),
        ((*STUDY, "--n-trials", "1e3"), "--n-trials: expected a whole number, but got '1e3'"),
        ((*STUDY, "--timeout", "inf"), "--timeout: must be in [0, 31536000], but got inf"),
        ((*STUDY, "--timeout", "nan"), "--timeout: must be in [0, 31536000], but got nan"),
        ((*STUDY, "--timeout", "-5"), "--timeout: must be in [0, 31536000], but got -5.0"),
        (("confirm", "s", "--seeds", "50"), "--seeds: must be in [1, 49], but got 50"),
        (("confirm", "s", "--threads", "0"), "--threads: must be in [1, 1024], but got 0"),
        (("dashboard", "--port", "65536"), "--port: must be in [1, 65535], but got 65536"),
    ],
)
def test_flags_are_bounded(capsys, argv, says) -> None:
    line = flag_error(capsys, *argv)
    assert line.startswith("python -m hpo.run ") and says in line, line


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"n_trials": -1}, "n_trials: must be in [0, 1000000], but got -1"),
        ({"timeout": math.nan}, "timeout: must be in [0, 31536000], but got nan"),
        ({"workers": 0}, "workers: must be in [1, 256], but got 0"),
        ({"workers": True}, "workers: must be a whole number in [1, 256], but got True"),
        ({"workers": 10**6}, "workers: must be in [1, 256], but got 1000000"),
    ],
)
def test_optimize_arguments_are_bounded_before_the_storage_is_opened(tmp_path: Path, kwargs, says) -> None:
    import hpo

    with pytest.raises(HpoError, match=re.escape(says)):
        hpo.optimize(copy.deepcopy(BASE), storage=f"sqlite:///{tmp_path / 'hpo.db'}", progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("objective.max_epochs=" + "1" * 5000, "cannot parse value '1111"),
        ("study.enqueue=" + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
)
def test_set_values_the_parser_cannot_hold_are_one_line(item: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_override(item)
    assert says in str(info.value) and len(str(info.value)) < 200


# --------------------------------------------------------------------------------------------
# The validation split leaves images on both sides (checked where the data is loaded, before
# the storage is opened: the worker's prepare(), the launcher's check_data())


@pytest.mark.parametrize(("fraction", "side"), [(0.9999, "no training image"), (0.0001, "no validation image")])
def test_a_split_that_leaves_a_side_empty_is_refused(fraction: float, side: str) -> None:
    from hpo.data import check_data, prepare

    settings = DataSettings(dataset="digits", validation_fraction=fraction)
    for check in (lambda s: check_data(parse_config({"data": {"dataset": "digits", "validation_fraction": fraction}})), prepare):
        with pytest.raises(DataError, match=f"data.validation_fraction = {fraction} leaves {side} of the 1438 training"):
            check(settings)
    split = prepare(DataSettings(dataset="digits", validation_fraction=0.001))  # 1.4 -> 1 validation image
    assert len(split.x_val) == 1 and len(split.x_train) == 1437


# --------------------------------------------------------------------------------------------
# Study files: any path a user can type


def study_text() -> str:
    return '[study]\nname = "t"\n[objective]\ntarget = 0.8\n'


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a_file").write_text(study_text())
    os.symlink(tmp_path / "loop_b", tmp_path / "loop_a")
    os.symlink(tmp_path / "loop_a", tmp_path / "loop_b")
    os.mkfifo(tmp_path / "fifo.toml")
    (tmp_path / "big.toml").write_text("# " + "x" * MAX_STUDY_FILE_BYTES + "\n")
    (tmp_path / "empty.toml").write_text("")
    (tmp_path / "blank.toml").write_text("\n  \n")
    (tmp_path / "comments.toml").write_text("# nothing here\n")
    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "twice.json").write_text('{"study": {"name": "a", "name": "b"}}')
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "deep.toml").write_text("a = " + "[" * 100_000 + "]" * 100_000)
    (tmp_path / "digits.toml").write_text("[objective]\nmax_epochs = " + "9" * 5000 + "\n")
    (tmp_path / "digits.json").write_text('{"objective": {"max_epochs": ' + "9" * 5000 + "}}")
    (tmp_path / "nan.json").write_text('{"objective": {"target": NaN}}')
    (tmp_path / "latin1.toml").write_bytes(b'[study]\nname = "caf\xe9"\n')
    return {"tmp": tmp_path}


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("{tmp}/loop_a", "cannot read study file: a loop of symbolic links"),
        ("{tmp}/a_file/study.toml", "cannot read study file: a part of the path is a file, not a folder"),
        ("{tmp}", "cannot read study file: it is a folder, not a regular file"),
        ("{tmp}/fifo.toml", "cannot read study file: it is a FIFO (named pipe), not a regular file"),
        ("/dev/zero", "cannot read study file: it is a character device, not a regular file"),
        ("/dev/null", "cannot read study file: it is a character device, not a regular file"),
        ("{tmp}/" + "n" * 300 + ".toml", "cannot read study file: a name in the path is too long"),
        ("{tmp}/big.toml", f"a study file may hold at most {MAX_STUDY_FILE_BYTES} (1 MiB)"),
        ("{tmp}/nope.toml", "study file not found"),
        ("{tmp}/empty.toml", "study file is empty"),
        ("{tmp}/blank.toml", "study file is empty"),
        ("{tmp}/comments.toml", "study file holds no tables"),
        ("{tmp}/empty.json", "study file holds no tables"),
        ("{tmp}/twice.json", "JSON object holds the key 'name' twice"),
        ("{tmp}/deep.json", "cannot parse JSON: nested too deeply"),
        ("{tmp}/deep.toml", "cannot parse TOML: nested too deeply"),
        ("{tmp}/digits.toml", "cannot parse TOML: Exceeds the limit (4300 digits)"),
        ("{tmp}/digits.json", "cannot parse JSON: Exceeds the limit (4300 digits)"),
        ("{tmp}/nan.json", "objective.target: must be in (0, 1], but got nan"),
        ("{tmp}/latin1.toml", "not UTF-8 text (byte 0xe9 at offset 19)"),
        ("{tmp}/nul\0.toml", "the path holds a NUL byte"),
    ],
)
def test_a_study_file_that_is_no_regular_text_file_is_one_line(paths, path: str, says: str) -> None:
    where = path.format(tmp=paths["tmp"])
    with pytest.raises(ConfigError) as info:
        load_config(where)
    message = str(info.value)
    assert message.startswith(f"{where}: ") and says in message and "\n" not in message, message


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    toml = tmp_path / "bom.toml"
    toml.write_bytes(b"\xef\xbb\xbf" + study_text().encode())
    assert load_config(toml).objective.target == 0.8
    js = tmp_path / "bom.json"
    js.write_bytes(b"\xef\xbb\xbf" + json.dumps({"objective": {"target": 0.7}}).encode())
    assert load_config(js).objective.target == 0.7


def test_cli_on_a_fifo_or_a_link_loop_is_one_line_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.toml")
    os.symlink(tmp_path / "loop_b", tmp_path / "loop_a")
    os.symlink(tmp_path / "loop_a", tmp_path / "loop_b")
    for name, says in (("fifo.toml", "it is a FIFO (named pipe)"), ("loop_a", "a loop of symbolic links")):
        out = run_cli("study", str(tmp_path / name), "--storage", f"sqlite:///{tmp_path / 'hpo.db'}", timeout=30)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"hpo: error: {tmp_path / name}: cannot read study file: {says}")
        assert "Traceback" not in out.stdout + out.stderr
    assert not (tmp_path / "hpo.db").exists()


# --------------------------------------------------------------------------------------------
# Seeds: in [0, 2**32 - 1] for any study size, and workers never share a sampler seed

TINY_STUDY = """\
[study]
name = "big"
sampler = "tpe"
pruner = "none"
seed = 4294967295
n_trials = 1
confirm_seeds = 0

[data]
dataset = "digits"
train_size = 200

[objective]
target = 0.99
max_epochs = 1

[space.dense]
units = [16, 32]
learning_rate = { low = 1e-3, high = 1e-2, log = true }
batch_size = 64
"""


@pytest.mark.parametrize("seed", [0, 12345, MAX_SEED - 1, MAX_SEED])
def test_sampler_seeds_stay_in_range_for_any_study_size(seed: int) -> None:
    assert sampler_seed(seed, 0) == seed  # a new study samples as its seed says
    seeds = {sampler_seed(seed, held) for held in (0, 1, 4294, 4295, 4300, 10**6, 10**9, 10**12)}
    assert len(seeds) == 8 and all(0 <= s <= MAX_SEED for s in seeds)
    assert derive_seed(seed, MAX_WORKERS) == (seed + MAX_WORKERS) % 2**32  # --workers' seed + i wraps too
    with pytest.raises(ValueError, match="seed must be in"):
        sampler_seed(MAX_SEED + 1, 0)


def test_workers_seeds_never_meet_in_studies_under_a_million_trials() -> None:
    """Worker ``i`` of ``--workers`` samples with ``seed + i + held * stride`` (mod 2**32): two
    workers share a seed only if the strides of two study sizes differ by under MAX_WORKERS."""
    offsets = np.sort((np.arange(1_000_000, dtype=np.uint64) * np.uint64(RESUME_SEED_STRIDE)) % np.uint64(2**32))
    gaps = np.diff(offsets.astype(np.int64))
    wrap = int(offsets[0]) + 2**32 - int(offsets[-1])
    assert min(int(gaps.min()), wrap) >= MAX_WORKERS


def add_copies(db: Path, study_name: str, n: int) -> None:
    """``n`` more finished trials like the study's first, written in one transaction (Optuna's
    add_trials takes ~15 ms a trial here: a minute for the 4,300 this needs)."""
    con = sqlite3.connect(db)
    with con:
        (study_id,) = con.execute("SELECT study_id FROM studies WHERE study_name = ?", (study_name,)).fetchone()
        first, state, start, end = con.execute(
            "SELECT trial_id, state, datetime_start, datetime_complete FROM trials WHERE study_id = ? ORDER BY number LIMIT 1",
            (study_id,),
        ).fetchone()
        params = con.execute("SELECT param_name, param_value, distribution_json FROM trial_params WHERE trial_id = ?", (first,))
        params = params.fetchall()
        (held,) = con.execute("SELECT count(*) FROM trials WHERE study_id = ?", (study_id,)).fetchone()
        for number in range(held, held + n):
            trial = con.execute(
                "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) VALUES (?, ?, ?, ?, ?)",
                (number, study_id, state, start, end),
            ).lastrowid
            con.executemany(
                "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) VALUES (?, ?, ?, ?)",
                [(trial, name, (value + number) % 2 if name == "units_l0" else value, dist) for name, value, dist in params],
            )
            con.execute(
                "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (?, 0, ?, 'FINITE')",
                (trial, 2.0 + (number % 97) / 100),
            )
    con.close()


@pytest.fixture
def big_study(tmp_path: Path):
    """An hpo study of 4,300 finished trials in a real SQLite file, seeded MAX_SEED; its study
    file starts with a UTF-8 byte-order mark (which an editor may well write)."""
    from hpo.storage import make_storage
    from hpo.study import open_study

    path = tmp_path / "study.toml"
    path.write_bytes(b"\xef\xbb\xbf" + TINY_STUDY.encode())
    db = tmp_path / "hpo.db"
    cfg = load_config(path)
    storage = make_storage(f"sqlite:///{db}")
    study = open_study(cfg, storage)
    dists = distributions(cfg)
    study.add_trial(optuna.trial.create_trial(params={"units_l0": 16, "learning_rate": 0.003}, distributions=dists, value=2.5))
    add_copies(db, study.study_name, 4299)
    storage.engine.dispose()
    return {"cfg": cfg, "db": db, "url": f"sqlite:///{db}", "file": path}


def test_a_seeded_study_of_4300_trials_resumes_with_the_sampler_the_worker_makes(big_study) -> None:
    cfg = big_study["cfg"]
    study = optuna.load_study(study_name=cfg.study.name, storage=big_study["url"])
    held = len(study.get_trials(deepcopy=False))  # as hpo.worker does it
    assert held == 4300 and cfg.study.seed + held * RESUME_SEED_STRIDE > MAX_SEED
    study.sampler = make_sampler(cfg, held=held)
    dists = distributions(cfg)
    trial = study.ask(dists)
    assert trial.params["units_l0"] in (16, 32) and 1e-3 <= trial.params["learning_rate"] <= 1e-2
    study.tell(trial, 2.0)
    again = make_sampler(cfg, held=held + 1)  # the next run starts elsewhere
    assert again._rng.rng.randint(2**31) != make_sampler(cfg, held=held)._rng.rng.randint(2**31)


def test_cli_resumes_a_seeded_study_of_4300_trials_from_a_file_with_a_byte_order_mark(big_study) -> None:
    out = run_cli(
        "study",
        str(big_study["file"]),
        "--storage",
        big_study["url"],
        "--n-trials",
        "1",
        "--no-artifacts",
        "--no-progress",
        env=cli_env(),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "study.sampler_options" not in out.stderr
    study = optuna.load_study(study_name="big", storage=big_study["url"])
    assert len(study.trials) == 4301 and study.trials[-1].state.is_finished()
