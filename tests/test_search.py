"""EpochCap: trials that can no longer beat the answer stop, at a known epoch (Optuna only)."""

from __future__ import annotations

import keras
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from hpo.api import load_config
from hpo.callbacks import TargetPruning, not_reached_cost
from hpo.search import EpochCap, make_pruner
from tests.conftest import STUDIES

MAX_EPOCHS = 15
TARGET = 0.88


class Always(optuna.pruners.BasePruner):
    def __init__(self, answer: bool):
        self.answer = answer
        self.asked = 0

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        self.asked += 1
        return self.answer


def study_with(pruner: optuna.pruners.BasePruner, reached: list[float] = (), answer: dict | None = None) -> optuna.Study:
    study = optuna.create_study(direction="minimize", pruner=pruner)
    for epochs in reached:
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=epochs))
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=not_reached_cost(MAX_EPOCHS, TARGET, 0.8)))
    if answer is not None:
        study.set_user_attr("answer", answer)
    return study


def stop_step(study: optuna.Study, curve: list[float], fraction: float | None = None) -> int | None:
    """Feed a learning curve (the monitored metric per check) as hpo's callback reports it; the
    0-based check at which the trial was pruned (None: ran to the end or reached the target)."""
    trial = study.ask()
    if fraction is not None:
        trial.set_user_attr("epoch_fraction", fraction)
    best = 0.0
    for step, value in enumerate(curve):
        best = max(best, value)
        if value >= TARGET:
            trial.report(float(step + 1), step)
            study.tell(trial, float(step + 1))
            return None
        trial.report(not_reached_cost(MAX_EPOCHS, TARGET, best), step)
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return step
    study.tell(trial, not_reached_cost(MAX_EPOCHS, TARGET, best))
    return None


SLOW = [0.80 + 0.005 * i for i in range(MAX_EPOCHS)]  # reaches 0.87, never the target


def test_no_bound_before_any_trial_reached_the_target() -> None:
    study = study_with(EpochCap(None, MAX_EPOCHS, slack=1))
    assert study.pruner.bound(study) is None
    assert stop_step(study, SLOW) is None


def test_the_best_single_trial_bounds_before_there_is_an_answer() -> None:
    study = study_with(EpochCap(None, MAX_EPOCHS, slack=1), reached=[6, 4])
    assert study.pruner.bound(study) == 5
    assert stop_step(study, SLOW) == 4  # not at the target after 5 epochs: capped
    assert study.pruner.capped == {3}


def test_the_answer_median_bounds_once_there_is_one() -> None:
    study = study_with(EpochCap(None, MAX_EPOCHS, slack=2), reached=[3], answer={"median": 6.5})
    assert study.pruner.bound(study) == 9  # ceil(6.5) + 2; the lucky single 3 does not count
    assert stop_step(study, SLOW) == 8


def test_a_trial_reaching_the_target_before_the_bound_is_not_capped() -> None:
    study = study_with(EpochCap(None, MAX_EPOCHS, slack=0), reached=[5])
    curve = [0.8, 0.82, 0.84, 0.86, 0.89]
    assert stop_step(study, curve) is None
    assert study.trials[-1].value == 5 and study.pruner.capped == set()


def test_fractional_checks_count_epochs_not_steps() -> None:
    study = study_with(EpochCap(None, MAX_EPOCHS, slack=1), reached=[2.25])
    # bound ceil(2.25) + 1 = 4 epochs = 16 checks of a quarter epoch: step 15
    assert stop_step(study, [0.8] * 40, fraction=0.25) == 15


def test_the_inner_pruner_decides_below_the_bound() -> None:
    inner = Always(True)
    study = study_with(EpochCap(inner, MAX_EPOCHS, slack=1), reached=[4])
    assert stop_step(study, SLOW) == 0 and inner.asked == 1
    assert study.pruner.capped == set()  # pruned by the inner pruner, not capped
    never = Always(False)
    study = study_with(EpochCap(never, MAX_EPOCHS, slack=1), reached=[4])
    assert stop_step(study, SLOW) == 4 and never.asked == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_epochs": 0}, "max_epochs must be >= 1"), ({"max_epochs": 3, "slack": -1}, "slack must be >= 0")],
)
def test_arguments_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EpochCap(None, **kwargs)


def callback_on(study: optuna.Study, **kwargs) -> TargetPruning:
    trial = study.ask()
    cb = TargetPruning(trial, "val_accuracy", TARGET, MAX_EPOCHS, **kwargs)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.stop_training = False
    cb.set_model(model)
    cb.on_train_begin()
    return cb


def feed(cb: TargetPruning, curve: list[float]) -> None:
    for epoch, value in enumerate(curve):
        cb.on_epoch_end(epoch, {"loss": 0.4, "val_accuracy": value})
        if cb.model.stop_training:
            break
    cb.on_train_end()


def test_the_callback_names_a_capped_trial() -> None:
    study = study_with(EpochCap(Always(False), MAX_EPOCHS, slack=1), reached=[3])
    cb = callback_on(study)
    with pytest.raises(optuna.TrialPruned, match="capped after epoch 4"):
        feed(cb, SLOW)
    assert cb.stop_reason == "capped"
    cb = callback_on(study_with(EpochCap(Always(True), MAX_EPOCHS, slack=1), reached=[3]))
    with pytest.raises(optuna.TrialPruned):
        feed(cb, SLOW)
    assert cb.stop_reason == "pruned"


def test_a_repeat_is_never_pruned_and_a_dropped_one_stops_where_it_cannot_win() -> None:
    cb = callback_on(study_with(Always(True), reached=[3]), prune=False)
    feed(cb, SLOW)  # the pruner would prune at once
    assert cb.stop_reason == "max_epochs" and cb.epochs_run == MAX_EPOCHS
    cb = callback_on(study_with(Always(False)), prune=False, stop_after=3)
    with pytest.raises(optuna.TrialPruned, match="dropped after epoch 3"):
        feed(cb, SLOW)
    assert cb.stop_reason == "dropped"
    cb = callback_on(study_with(Always(False)), prune=False, stop_after=3)
    feed(cb, [0.8, 0.9])  # reached before the limit
    assert cb.stop_reason == "target" and cb.epochs_to_target == 2


def test_successive_halving_rungs_fall_after_epochs_2_5_and_17() -> None:
    """hpo's callback reports step s after epoch s + 1 (steps count from 0, as the study note
    says), and the rungs of the shipped successive halving (min resource 1, reduction factor 4)
    are in steps: 1, 4 and 16, that is after epochs 2, 5 and 17, as the study files say."""
    cfg = load_config(STUDIES / "quickstart.toml", ["objective.max_epochs=20", "objective.cap=false"])
    study = optuna.create_study(direction="minimize", pruner=make_pruner(cfg))
    cb = TargetPruning(study.ask(), "val_accuracy", 0.85, 20)
    cb.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    cb.on_train_begin()
    first_seen: dict[str, int] = {}
    for epoch in range(1, 21):
        cb.on_epoch_end(epoch - 1, {"loss": 0.4, "val_accuracy": 0.5 + 0.01 * epoch})  # alone: always promoted
        for key in study.trials[0].system_attrs:
            first_seen.setdefault(key, epoch)
    assert sorted(study.trials[0].intermediate_values) == list(range(20))
    assert first_seen == {"completed_rung_0": 2, "completed_rung_1": 5, "completed_rung_2": 17}
