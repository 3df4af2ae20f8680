"""One command, one account: what a command asked for and ran, across its processes."""

from __future__ import annotations

import pytest

from hpo.account import ACCOUNT_ENV, Account


def test_an_account_travels_through_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = Account(asked=30, ran=12, searched=10, processes=2, banner=True)
    monkeypatch.setenv(ACCOUNT_ENV, first.to_json())
    inherited = Account.inherited(asked=20)  # a recycled process asks for the 20 still to run
    assert inherited == first  # the command's own numbers, not the process's
    assert Account.inherited(asked=5).asked == 5  # taken: the next command starts its own
    monkeypatch.setenv(ACCOUNT_ENV, "not json")
    broken = Account.inherited(asked=4)
    assert (broken.asked, broken.ran, broken.banner) == (4, 0, False)  # a new account, not an error


def test_the_trials_line_counts_repeats_and_processes() -> None:
    a = Account(asked=30, ran=38, searched=30, processes=4)
    line = a.trials_line()
    assert line.startswith("30 trials asked, 38 run (30 searched + 8 repeats) in ")
    assert line.endswith(" s in 4 processes")
    b = Account(asked=None, ran=2, searched=2)
    assert b.trials_line().startswith("unlimited trials asked, 2 run in ") and "processes" not in b.trials_line()
    b.add(a)
    assert (b.ran, b.searched) == (40, 32)


# --------------------------------------------------------------------------------------------
# What the terminal shows: a line per finished trial, the bar's best result


def _cfg(confirm: int = 3):
    from hpo.config import parse_config

    return parse_config({"objective": {"target": 0.88, "max_epochs": 15}, "study": {"confirm_seeds": confirm}})


def _trial(number: int, state, value=None, **attrs):
    import optuna

    trial = optuna.trial.create_trial(state=state, value=value, user_attrs={"seconds": 12.34, **attrs})
    trial.number = number
    return trial


@pytest.mark.parametrize(
    ("state", "attrs", "line"),
    [
        (
            "COMPLETE",
            {"reached_target": True, "epochs_to_target": 4, "epochs": 4},
            "trial 7: 4 epochs to val_accuracy >= 0.88, 12.3 s",
        ),
        (
            "COMPLETE",
            {"reached_target": True, "epochs_to_target": 1.5, "repeat_of": 3, "seed": 9},
            "trial 7 (repeat of 3, seed 9): 1.5 epochs",
        ),
        (
            "PRUNED",
            {"stop_reason": "pruned", "epochs": 2, "best_val_accuracy": 0.61},
            "trial 7: pruned after epoch 2 (best val_accuracy 0.6100), 12.3 s",
        ),
        (
            "PRUNED",
            {"stop_reason": "capped", "epochs": 5, "best_val_accuracy": 0.87},
            "trial 7: capped after epoch 5 (best val_accuracy 0.8700)",
        ),
        ("PRUNED", {"stop_reason": "dropped", "epochs": 0}, "trial 7: dropped: it can no longer beat the answer"),
        (
            "COMPLETE",
            {"stop_reason": "max_epochs", "epochs": 15, "best_val_accuracy": 0.866},
            "trial 7: not reached in 15 epochs (best val_accuracy 0.8660)",
        ),
        (
            "COMPLETE",
            {"stop_reason": "too_large", "n_params": 25000000},
            "trial 7: not built: 25,000,000 parameters, over objective.max_params",
        ),
        ("COMPLETE", {"stop_reason": "nan", "epochs": 3}, "trial 7: stopped after epoch 3: the loss is NaN"),
        (
            "FAIL",
            {"stop_reason": "error", "error": "ResourceExhaustedError: OOM"},
            "trial 7: failed: ResourceExhaustedError: OOM",
        ),
    ],
)
def test_a_finished_trial_is_one_line_in_the_objective_s_words(state: str, attrs: dict, line: str) -> None:
    from optuna.trial import TrialState

    from hpo.account import trial_line

    value = None if state != "COMPLETE" else 4.0
    text = trial_line(_trial(7, TrialState[state], value, **attrs), _cfg())
    assert text is not None and text.startswith(line), text
    assert "\n" not in text


def test_trials_that_did_not_train_have_no_line() -> None:
    from optuna.trial import TrialState

    from hpo.account import trial_line

    assert trial_line(_trial(1, TrialState.PRUNED, stop_reason="max_trials"), _cfg()) is None
    assert trial_line(_trial(1, TrialState.FAIL, stop_reason="interrupted"), _cfg()) is None


def test_the_bar_shows_the_best_result_and_the_answer_in_epochs() -> None:
    import optuna
    from optuna.trial import TrialState

    from hpo.account import best_text

    study = optuna.create_study(direction="minimize")
    assert best_text(study, _cfg()) == ""
    study.add_trial(_trial(0, TrialState.COMPLETE, 16.8, best_val_accuracy=0.8662))
    assert best_text(study, _cfg()) == "best: not reached (val_accuracy 0.8662)"
    study.add_trial(_trial(1, TrialState.COMPLETE, 4.0, reached_target=True, epochs_to_target=4))
    assert best_text(study, _cfg()) == "best: 4 epochs (trial 1)"
    study.set_user_attr("answer", {"median": 5.0, "trial": 1, "trials": [1, 2, 3], "epochs": [4, 5, 6]})
    assert best_text(study, _cfg()) == "best: 4 epochs (trial 1), answer: 5 epochs (trial 1)"
    assert best_text(study, _cfg(confirm=0)) == "best: 4 epochs (trial 1)"
