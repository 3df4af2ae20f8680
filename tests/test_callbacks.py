"""The target/pruning callback and the cost unit it reports in."""

from __future__ import annotations

import math

import keras
import numpy as np
import optuna
import pytest

from hpo.callbacks import TargetPruning, cost, not_reached_cost
from hpo.config import DataSettings
from hpo.data import prepare
from hpo.errors import MonitorError


class FixedAnswerPruner(optuna.pruners.BasePruner):
    """A real Optuna pruner that always (or never) prunes."""

    def __init__(self, answer: bool):
        self.answer = answer

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return self.answer


def make(prune: bool, target: float = 0.8, max_epochs: int = 5, monitor: str = "val_accuracy"):
    study = optuna.create_study(direction="minimize", pruner=FixedAnswerPruner(prune))
    trial = study.ask()
    cb = TargetPruning(trial, monitor, target, max_epochs)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.stop_training = False  # as model.fit sets it
    cb.set_model(model)
    cb.on_train_begin()
    return study, trial, cb


def epochs(cb: TargetPruning, values: list[float], loss: float = 0.5) -> None:
    for epoch, value in enumerate(values):
        cb.on_epoch_end(epoch, {"loss": loss, "accuracy": value, "val_loss": loss, "val_accuracy": value})
        if cb.model.stop_training:
            return


def test_cost_formula() -> None:
    assert cost(15, 0.88, 0.9, 3) == 3.0
    assert not_reached_cost(15, 0.88, 0.80) == pytest.approx(16.08)
    assert not_reached_cost(15, 0.88, 0.87) < not_reached_cost(15, 0.88, 0.80)
    assert not_reached_cost(15, 0.88, 0.0) > 15  # every unreached trial costs more than any reached one
    assert not_reached_cost(15, 0.88, -math.inf) == pytest.approx(16.88)


def test_stops_at_the_epoch_the_target_is_reached() -> None:
    _, trial, cb = make(prune=False)
    epochs(cb, [0.5, 0.7, 0.85, 0.9])
    assert cb.epochs_to_target == 3
    assert cb.stop_reason == "target"
    assert cb.model.stop_training is True
    assert cb.epochs_run == 3
    frozen = trial.study.trials[0]
    assert frozen.intermediate_values == pytest.approx({0: 5 + 1 + 0.3, 1: 5 + 1 + 0.1, 2: 3.0})


def test_never_prune_runs_to_max_epochs() -> None:
    _, trial, cb = make(prune=False, max_epochs=3)
    epochs(cb, [0.5, 0.6, 0.7])
    cb.on_train_end()
    assert cb.stop_reason == "max_epochs"
    assert cb.epochs_to_target is None
    assert cb.last_cost == pytest.approx(3 + 1 + (0.8 - 0.7))
    assert cb.best == 0.7


def test_always_prune_raises_after_reporting() -> None:
    _, trial, cb = make(prune=True)
    with pytest.raises(optuna.TrialPruned):
        epochs(cb, [0.5])
    assert cb.stop_reason == "pruned"
    assert trial.study.trials[0].intermediate_values == pytest.approx({0: 5 + 1 + 0.3})


def test_target_wins_over_pruning_in_the_same_epoch() -> None:
    _, _, cb = make(prune=True)
    epochs(cb, [0.95])
    assert cb.stop_reason == "target"
    assert cb.epochs_to_target == 1


def test_nan_loss_stops_with_not_reached_cost() -> None:
    _, _, cb = make(prune=False)
    epochs(cb, [0.6, 0.1], loss=float("nan"))
    assert cb.stop_reason == "nan"
    assert cb.model.stop_training is True
    assert cb.last_cost > 5


def test_missing_monitor_lists_available_keys() -> None:
    _, _, cb = make(prune=False)
    with pytest.raises(MonitorError, match=r"\(accuracy, loss\)"):
        cb.on_epoch_end(0, {"loss": 0.3, "accuracy": 0.5})


def test_acc_alias_and_state_reset() -> None:
    _, _, cb = make(prune=False, monitor="acc")
    cb.on_epoch_end(0, {"loss": 0.3, "acc": 0.9})
    assert cb.epochs_to_target == 1
    cb.on_train_begin()
    assert cb.epochs_to_target is None and cb.stop_reason is None and cb.history == {}


def test_rejects_bad_arguments() -> None:
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(ValueError, match="target"):
        TargetPruning(trial, "val_accuracy", 1.5, 3)
    with pytest.raises(ValueError, match="max_epochs"):
        TargetPruning(trial, "val_accuracy", 0.5, 0)


def test_with_real_training_on_fashion_mnist() -> None:
    """A real fit: an easy target is reached in epoch 1, the trial's value is 1."""
    split = prepare(DataSettings(train_size=2000))
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(split.image_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    study = optuna.create_study(direction="minimize", pruner=FixedAnswerPruner(False))

    def objective(trial: optuna.Trial) -> float:
        cb = TargetPruning(trial, "val_accuracy", 0.3, 4)
        model.fit(
            split.x_train,
            split.y_train,
            epochs=4,
            batch_size=64,
            validation_data=(split.x_val, split.y_val),
            callbacks=[cb],
            verbose=0,
        )
        assert cb.epochs_to_target == 1 and len(cb.history["val_accuracy"]) == 1
        return cb.last_cost

    study.optimize(objective, n_trials=1)
    assert study.best_value == 1.0
    assert np.isfinite(study.trials[0].intermediate_values[0])


def test_sub_epoch_checks_count_fractional_epochs_and_report_check_steps() -> None:
    study = optuna.create_study(direction="minimize", pruner=FixedAnswerPruner(False))
    trial = study.ask()
    cb = TargetPruning(trial, "val_accuracy", 0.8, 5, epoch_fraction=0.25)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.stop_training = False
    cb.set_model(model)
    cb.on_train_begin()
    epochs(cb, [0.5, 0.6, 0.7, 0.75, 0.79, 0.81, 0.9])
    assert cb.epochs_to_target == 1.5
    assert cb.epochs_run == 1.5
    assert cb.history["epoch"] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    assert cb.last_cost == 1.5
    # one report per check, in the objective's unit; the step is the check's number
    assert sorted(trial.storage.get_trial(trial._trial_id).intermediate_values) == [0, 1, 2, 3, 4, 5]
    assert trial.storage.get_trial(trial._trial_id).intermediate_values[4] == pytest.approx(not_reached_cost(5, 0.8, 0.79))
    with pytest.raises(ValueError, match="epoch_fraction"):
        TargetPruning(trial, "val_accuracy", 0.8, 5, epoch_fraction=1.5)


def test_rejects_bad_arguments_naming_its_own_argument() -> None:
    trial = optuna.create_study().ask()
    with pytest.raises(ValueError, match=r"TargetPruning: cannot tell whether 'val_widget'.*mode='max' or mode='min'"):
        TargetPruning(trial, "val_widget", 0.5, 3)
    with pytest.raises(ValueError, match="TargetPruning: mode must be"):
        TargetPruning(trial, "val_loss", 0.5, 3, mode="down")
    with pytest.raises(ValueError, match="TargetPruning: target must be a finite number"):
        TargetPruning(trial, "val_loss", math.nan, 3)
    with pytest.raises(ValueError, match="TargetPruning: max_epochs must be a whole number"):
        TargetPruning(trial, "val_loss", 0.3, 2.5)
    assert TargetPruning(trial, "val_loss", 0.3, 3).mode == "min"
    assert TargetPruning(trial, "val_auc", 0.9, 3).mode == "max"
    assert TargetPruning(trial, "val_widget", 7.0, 3, mode="max").target == 7.0  # any metric, any scale


def test_missing_metric_names_the_callback_argument_not_a_config_key() -> None:
    _, _, cb = make(prune=False, monitor="val_auc")
    with pytest.raises(
        MonitorError, match=r"TargetPruning\(monitor='val_auc'\) is not among the metrics Keras logged \(loss, val_loss\)"
    ):
        cb.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.5})


def test_min_mode_reports_the_gap_above_the_target() -> None:
    study = optuna.create_study(direction="minimize", pruner=FixedAnswerPruner(False))
    trial = study.ask()
    cb = TargetPruning(trial, "val_loss", 0.3, 3)
    cb.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    cb.model.stop_training = False
    cb.on_train_begin()
    for epoch, loss in enumerate([0.9, 0.5, 0.4]):
        cb.on_epoch_end(epoch, {"loss": loss, "val_loss": loss})
    assert cb.stop_reason == "max_epochs" and cb.epochs_to_target is None and cb.best == 0.4
    assert cb.last_cost == pytest.approx(3 + 1 + 0.1)  # max_epochs + 1 + (best - target)
    assert cost(3, 0.3, 0.35, None, "min") < cost(3, 0.3, 0.4, None, "min")


def _own_model() -> keras.Model:
    """A user's own model, compiled their way (not hpo's builders)."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def test_val_loss_target_stops_a_users_own_model_at_the_target() -> None:
    split = prepare(DataSettings(train_size=3000))
    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.NopPruner())
    seen: dict[str, object] = {}

    def objective(trial: optuna.Trial) -> float:
        model = _own_model()
        cb = TargetPruning(trial, monitor="val_loss", target=0.75, mode="min", max_epochs=10)
        history = model.fit(
            split.x_train,
            split.y_train,
            validation_data=(split.x_val, split.y_val),
            epochs=10,
            batch_size=64,
            callbacks=[cb],
            verbose=0,
        )
        seen.update(cb=cb, losses=history.history["val_loss"])
        return cb.last_cost

    study.optimize(objective, n_trials=1)
    cb, losses = seen["cb"], seen["losses"]
    assert cb.stop_reason == "target"
    assert losses[-1] <= 0.75 and all(v > 0.75 for v in losses[:-1])  # stopped at the first epoch at or below
    assert study.trials[0].value == cb.epochs_to_target == len(losses) < 10


def test_max_epochs_is_enforced_whatever_fit_asks_for() -> None:
    split = prepare(DataSettings(train_size=1000))
    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.NopPruner())
    seen: dict[str, object] = {}

    def objective(trial: optuna.Trial) -> float:
        cb = TargetPruning(trial, "val_accuracy", 0.999, max_epochs=3)
        history = _own_model().fit(
            split.x_train, split.y_train, validation_data=(split.x_val, split.y_val), epochs=12, verbose=0, callbacks=[cb]
        )
        seen.update(cb=cb, epochs=len(history.history["loss"]))
        return cb.last_cost

    study.optimize(objective, n_trials=1)
    assert seen["epochs"] == 3 and seen["cb"].stop_reason == "max_epochs"
    assert 4 < study.trials[0].value < 5  # never reached: max_epochs + 1 + gap, more than any reached trial
