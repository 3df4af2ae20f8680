"""The confirmed answer: configurations over seeds, their medians, races, and the repeats a fast
trial earns (real Optuna studies, no Keras)."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from hpo.answer import (
    ANSWER_ATTR,
    Confirmation,
    answer_line,
    compute_answer,
    configurations,
    format_runs,
    repeat_budget,
)

DIST = {"units": IntDistribution(1, 1000)}


def run(
    number: int,
    epochs: float | None,
    *,
    units: int = 10,
    repeat_of: int | None = None,
    state=TrialState.COMPLETE,
    stop_reason: str | None = None,
    n_params: int = 100,
) -> optuna.trial.FrozenTrial:
    """A stored trial as hpo records it: value in the cost unit (15 max epochs), user attributes."""
    attrs = {
        "epochs_to_target": epochs,
        "n_params": n_params,
        "stop_reason": stop_reason or ("target" if epochs else "max_epochs"),
    }
    if repeat_of is not None:
        attrs["repeat_of"] = repeat_of
    value = epochs if epochs is not None else 16.05
    trial = create_trial(
        state=state,
        value=value if state != TrialState.FAIL else None,
        params={"units": units},
        distributions=DIST,
        user_attrs=attrs,
    )
    trial.number = number
    return trial


def test_median_over_runs_counts_a_missed_target_as_not_reached() -> None:
    trials = [run(0, 4), run(1, 7, repeat_of=0), run(2, None, repeat_of=0)]
    (config,) = configurations(trials).values()
    assert config["epochs"] == [4, 7, None]
    assert config["median"] == 7  # 4, 7, not reached
    assert config["min"] == 4 and config["max"] is None
    assert format_runs(config) == "7 epochs (median of 3 seeds: 4, 7, not reached)"


def test_a_median_run_that_missed_is_no_answer() -> None:
    trials = [run(0, 4), run(1, None, repeat_of=0), run(2, None, repeat_of=0)]
    assert math.isinf(configurations(trials)[0]["median"])
    assert compute_answer(trials, 3) is None


def test_answer_is_the_lowest_median_not_the_luckiest_trial() -> None:
    trials = [
        run(0, 3, units=1),  # the luckiest single trial ...
        run(1, 8, units=1, repeat_of=0),
        run(2, 9, units=1, repeat_of=0),  # ... median 8
        run(3, 5, units=2),
        run(4, 5, units=2, repeat_of=3),
        run(5, 6, units=2, repeat_of=3),  # median 5
        run(6, 2, units=3),  # not confirmed: one run only
    ]
    answer = compute_answer(trials, 3)
    assert answer["trial"] == 3 and answer["trials"] == [3, 4, 5]
    assert answer["median"] == 5 and answer["epochs"] == [5, 5, 6]
    assert answer["params"] == {"units": 2}
    assert "5 epochs (median of 3 seeds: 5, 5, 6)" in answer_line(answer, 3)


def test_ties_go_to_the_smaller_model_and_even_counts_average() -> None:
    trials = [
        run(0, 4, n_params=900),
        run(1, 6, repeat_of=0, n_params=900),
        run(2, 5, units=2, n_params=100),
        run(3, 5, units=2, repeat_of=2, n_params=100),
    ]
    answer = compute_answer(trials, 2)
    assert answer["trial"] == 2 and answer["median"] == 5


def test_dropped_and_failed_repeats_are_no_runs() -> None:
    trials = [
        run(0, 4),
        run(1, None, repeat_of=0, state=TrialState.PRUNED, stop_reason="dropped"),
        run(2, None, repeat_of=0, state=TrialState.FAIL, stop_reason="error"),
        run(3, 5, repeat_of=0),
    ]
    assert configurations(trials)[0]["trials"] == [0, 3]
    assert compute_answer(trials, 3) is None  # two runs of three
    assert compute_answer(trials, 2)["median"] == 4.5


def test_confirmation_off_has_no_answer() -> None:
    trials = [run(0, 4), run(1, 5, repeat_of=0), run(2, 6, repeat_of=0)]
    assert compute_answer(trials, 1) is None and compute_answer(trials, 0) is None
    assert "confirmation off" in answer_line(None, 0)
    assert "no confirmed answer yet" in answer_line(None, 3)


def test_repeat_budget_races_a_candidate_against_the_answer() -> None:
    answer = {"trial": 10, "median": 5.0, "n_params": 100}
    # Candidate 0 took 3; this repeat (1) and one more to come.  Median of (3, x, best case 1)
    # is min(x, 3) at most... it beats 5 whatever x is: no limit.
    trials = [run(0, 3), run(1, None, repeat_of=0, state=TrialState.RUNNING)]
    assert repeat_budget(trials, trials[1], answer, 3, 15) is None
    # Candidate took 4, then a repeat missed: (4, None, x) has median x or 4 -> x must be < 5.
    trials = [run(0, 4), run(1, None, repeat_of=0), run(2, None, repeat_of=0, state=TrialState.RUNNING)]
    assert repeat_budget(trials, trials[2], answer, 3, 15) == 4
    # Two runs at 7: the median is at least 7 whatever the last gives: not trained at all.
    trials = [run(0, 7), run(1, 7, repeat_of=0), run(2, None, repeat_of=0, state=TrialState.RUNNING)]
    assert repeat_budget(trials, trials[2], answer, 3, 15) == 0
    # Without an answer, or for the answer's own configuration, there is no race.
    assert repeat_budget(trials, trials[2], None, 3, 15) is None
    assert repeat_budget(trials, trials[2], {**answer, "trial": 0}, 3, 15) is None


def test_repeat_budget_with_fractional_checks() -> None:
    answer = {"trial": 10, "median": 2.0, "n_params": 100}
    trials = [run(0, 1.5), run(1, None, repeat_of=0), run(2, None, repeat_of=0, state=TrialState.RUNNING)]
    assert repeat_budget(trials, trials[2], answer, 3, 4, step=0.25) == 1.75


def objective_with(epochs_by_units: dict[int, list[float | None]]):
    """A fake objective: each run of a configuration takes the next epochs from its list."""
    seen: dict[int, int] = {}

    def objective(trial: optuna.Trial) -> float:
        units = trial.suggest_int("units", 1, 1000)
        k = seen.get(units, 0)
        seen[units] = k + 1
        epochs = epochs_by_units[units][k]
        trial.set_user_attr("epochs_to_target", epochs)
        trial.set_user_attr("n_params", units)
        trial.set_user_attr("stop_reason", "target" if epochs else "max_epochs")
        return epochs if epochs is not None else 16.0

    return objective


def test_a_fast_trial_enqueues_its_repeats_as_the_next_trials_and_the_answer_is_stored() -> None:
    study = optuna.create_study(direction="minimize")
    confirm = Confirmation(3)
    objective = objective_with({5: [6, 8, 7], 7: [4, 5, None], 9: [9], 11: [7]})
    for units, n in ((5, 3), (7, 3), (9, 1), (11, 1)):
        study.enqueue_trial({"units": units})
        study.optimize(objective, n_trials=n, callbacks=[confirm])
    trials = study.get_trials()
    # 5 took 6 epochs, no answer yet: its two repeats were the next trials, median 7.  7 took 4
    # epochs, fewer than 7: confirmed too (4, 5, not reached: median 5).  9 and 11 took 9 and 7,
    # not fewer than the answer's 5: not repeated.
    assert [t.params["units"] for t in trials] == [5, 5, 5, 7, 7, 7, 9, 11]
    assert [t.user_attrs.get("repeat_of") for t in trials] == [None, 0, 0, None, 3, 3, None, None]
    assert not study.get_trials(states=(TrialState.WAITING,))
    answer = study.user_attrs[ANSWER_ATTR]
    assert answer["trial"] == 3 and answer["trials"] == [3, 4, 5]
    assert answer["epochs"] == [4, 5, None] and answer["median"] == 5
    assert confirm.enqueued == {0: 2, 3: 2}


def test_the_stored_answer_follows_the_stored_trials() -> None:
    """A worker recomputes the answer from the storage, so trials another worker added count."""
    study = optuna.create_study(direction="minimize")
    for t in (run(0, 6, units=1), run(1, 6, units=1, repeat_of=0), run(2, 6, units=1, repeat_of=0)):
        study.add_trial(t)
    study.set_user_attr(ANSWER_ATTR, {"trial": 99, "median": 2.0})  # stale, from nowhere
    confirm = Confirmation(3)
    study.enqueue_trial({"units": 3})
    study.optimize(objective_with({3: [7]}), n_trials=1, callbacks=[confirm])
    assert study.user_attrs[ANSWER_ATTR]["trial"] == 0 and study.user_attrs[ANSWER_ATTR]["median"] == 6
    assert not study.get_trials(states=(TrialState.WAITING,))  # 7 epochs is no faster than 6


@pytest.mark.parametrize("seeds", [0, 1])
def test_confirmation_needs_two_runs(seeds: int) -> None:
    with pytest.raises(ValueError, match="confirm_seeds must be >= 2"):
        Confirmation(seeds)
