"""Search space -> parameters, with Optuna's FixedTrial and a real study."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.config import parse_config
from hpo.errors import ConfigError
from hpo.space import distributions, grid_search_space, sample

SPACE = {
    "layers": {"low": 1, "high": 3},
    "units": [16, 32, 64],
    "activation": ["relu", "tanh"],
    "dropout": 0.25,
    "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
}


def config(**space: object) -> object:
    return parse_config({"space": {"dense": {**SPACE, **space}}})


def test_fixed_trial_gives_conditional_units() -> None:
    cfg = config()
    trial = optuna.trial.FixedTrial({"layers": 2, "units_l0": 64, "units_l1": 16, "activation": "tanh", "learning_rate": 3e-3})
    p = sample(trial, cfg)
    assert p.family == "dense"
    assert p.arch["units"] == (64, 16)
    assert p.arch["activation"] == "tanh"
    assert p.arch["dropout"] == 0.25  # fixed: used, not an Optuna parameter
    assert p.learning_rate == 3e-3
    assert p.optimizer == "adam" and p.batch_size == 32  # defaults
    assert p.fixed["dropout"] == 0.25
    assert "units_l2" not in trial.params


def test_study_samples_only_active_layers() -> None:
    cfg = config()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        p = sample(trial, cfg)
        units = [k for k in trial.params if k.startswith("units_l")]
        assert len(units) == len(p.arch["units"]) == trial.params["layers"]
        assert set(p.arch["units"]) <= {16, 32, 64}
        assert 1e-4 <= p.learning_rate <= 1e-2
        study.tell(trial, 1.0)


def test_distributions_cover_every_name() -> None:
    dists = distributions(config())
    assert dists["layers"] == IntDistribution(1, 3)
    assert dists["units_l2"] == CategoricalDistribution([16, 32, 64])
    assert dists["learning_rate"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert "dropout" not in dists  # fixed


def test_grid_space_from_lists_and_stepped_ranges() -> None:
    cfg = parse_config(
        {
            "study": {"sampler": "grid"},
            "space": {"dense": {"units": [16, 32], "learning_rate": {"low": 0.001, "high": 0.003, "step": 0.001}}},
        }
    )
    grid = grid_search_space(cfg)
    assert grid["units_l0"] == [16, 32]
    assert grid["learning_rate"] == pytest.approx([0.001, 0.002, 0.003])


def test_grid_refuses_continuous_range() -> None:
    cfg = config()
    with pytest.raises(ConfigError, match="space.dense.learning_rate"):
        grid_search_space(cfg)
