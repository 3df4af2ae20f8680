"""Sub-epoch checks: how a trial's training is cut into checks, trained for real."""

from __future__ import annotations

import optuna
import pytest

from hpo import reporting as report
from hpo.config import parse_config
from hpo.data import prepare
from hpo.objective import Objective, Schedule


@pytest.mark.parametrize(
    ("n", "batch", "k", "steps", "spe"),
    [
        (54000, 32, 4, 448, 32),  # 421.9 batches per quarter, rounded up to whole executions of 32
        (54000, 256, 4, 64, 32),
        (1000, 32, 4, 8, 8),  # fewer batches per check than one execution: smaller executions
        (1000, 256, 4, 1, 1),  # 3.9 batches per pass: one batch per check
        (1000, 1000, 2, None, 32),  # a check would hold a whole pass: plain epochs
    ],
)
def test_schedule_steps(n: int, batch: int, k: int, steps: int | None, spe: int) -> None:
    s = Schedule(n, batch, max_epochs=3, checks_per_epoch=k)
    assert s.steps == steps
    assert s.steps_per_execution == spe
    if steps is None:
        assert (s.fraction, s.keras_epochs) == (1.0, 3)
    else:
        assert s.fraction == steps * batch / n
        assert s.keras_epochs * s.fraction >= 3 > (s.keras_epochs - 1) * s.fraction  # at least max_epochs of data


def test_one_check_per_epoch_keeps_whole_epochs() -> None:
    s = Schedule(54000, 32, max_epochs=15, checks_per_epoch=1)
    assert (s.steps, s.fraction, s.keras_epochs) == (None, 1.0, 15)


def test_trial_with_four_checks_per_epoch_on_digits() -> None:
    cfg = parse_config(
        {
            "study": {"seed": 3, "pruner": "none"},
            "data": {"dataset": "digits"},
            "objective": {"target": 0.9, "max_epochs": 6, "checks_per_epoch": 4},
            "space": {"dense": {"layers": 1, "units": 64, "learning_rate": 3e-3, "batch_size": 16, "optimizer": "adam"}},
        }
    )
    split = prepare(cfg.data)
    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.NopPruner())
    study.optimize(Objective(cfg, split), n_trials=1)
    t = study.trials[0]
    ua, history = t.user_attrs, t.system_attrs["history"]
    fraction = Schedule(len(split.x_train), 16, 6, 4).fraction
    assert 0.2 < fraction < 0.3
    checks = len(history["epoch_seconds"])
    assert history["epoch"] == [round((i + 1) * fraction, 4) for i in range(checks)]
    assert sorted(t.intermediate_values) == list(range(checks))
    assert ua["reached_target"], ua
    assert ua["epochs_to_target"] == t.value == history["epoch"][-1]
    assert not float(t.value).is_integer()  # a fraction of an epoch, not rounded up to the next one
    frame = report.history_frame(history)
    assert list(frame["epoch"]) == history["epoch"]
