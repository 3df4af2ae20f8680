"""The study's answer: the configuration with the lowest median epochs-to-target over seeds.

One trial's epochs-to-target depends on its seed, so the fastest single trial is biased low (it
is the luckiest draw of many).  hpo confirms instead: when a trial reaches the target in fewer
epochs than the current answer's median (or there is no answer yet), ``study.confirm_seeds - 1``
repeats of its exact parameters are enqueued, each trained with its own seed and never pruned.
A *configuration* is an original trial with its repeats (user attribute ``repeat_of``); its runs
are the original and every finished repeat, a repeat that missed the target counting as not
reached.  The answer is the configuration with the lowest median over at least
``confirm_seeds`` runs (ties: the smaller model, then the earlier trial), stored as the study's
user attribute ``answer`` and recomputed from the stored trials after every trial, by whichever
worker finished it.

Confirmation races: a repeat whose configuration can no longer beat the answer, whatever its
remaining runs give, is not trained, and one that could only win by reaching the target before
some epoch is stopped there (``stop_reason = "dropped"``, PRUNED; a dropped repeat is not a run).

Everything here but :class:`Confirmation` is plain arithmetic over frozen trials.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "ANSWER_ATTR",
    "Confirmation",
    "Configuration",
    "answer_line",
    "compute_answer",
    "configurations",
    "confirmation_cost",
    "format_runs",
    "repeat_budget",
    "stored_answer",
]

ANSWER_ATTR = "answer"  # study user attribute holding the answer (see compute_answer)
NOT_RUNS = ("dropped",)  # stop reasons of finished trials that are no run of their configuration


def _group(trial: FrozenTrial) -> int:
    root = trial.user_attrs.get("repeat_of")
    return int(root) if root is not None else trial.number


def _is_run(trial: FrozenTrial) -> bool:
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and trial.user_attrs.get("stop_reason") not in NOT_RUNS


def _epochs(trial: FrozenTrial) -> float | None:
    value = trial.user_attrs.get("epochs_to_target")
    return None if value is None else float(value)


def _median(epochs: Sequence[float | None]) -> float:
    """Median with not-reached runs as infinity (inf: the median run did not reach the target)."""
    return float(statistics.median(math.inf if e is None else e for e in epochs))


class Configuration(dict):
    """One configuration's runs: ``trial`` (the original), ``trials``, ``epochs`` (None: not
    reached), ``median``, ``min``, ``max`` (None when a run did not reach), ``n_params``,
    ``params``, ``runs``."""

    @property
    def reached(self) -> bool:
        return math.isfinite(self["median"])


def configurations(trials: Iterable[FrozenTrial]) -> dict[int, Configuration]:
    """Original trial number -> its configuration, for every original that reached the target or
    has repeats (repeats of an original that is not stored are grouped all the same)."""
    groups: dict[int, list[FrozenTrial]] = {}
    originals: dict[int, FrozenTrial] = {}
    for t in trials:
        if t.user_attrs.get("repeat_of") is None:
            originals[t.number] = t
        if _is_run(t):
            groups.setdefault(_group(t), []).append(t)
    out: dict[int, Configuration] = {}
    for root, runs in sorted(groups.items()):
        first = originals.get(root, runs[0])
        if first.user_attrs.get("repeat_of") is None and _epochs(first) is None and len(runs) == 1:
            continue  # a single trial that never reached the target: no candidate
        runs.sort(key=lambda t: t.number)
        epochs = [_epochs(t) for t in runs]
        reached = [e for e in epochs if e is not None]
        out[root] = Configuration(
            trial=root,
            trials=[t.number for t in runs],
            epochs=epochs,
            median=_median(epochs),
            min=min(reached) if reached else None,
            max=max(reached) if len(reached) == len(epochs) else None,
            n_params=first.user_attrs.get("n_params"),
            params={**first.params, **first.user_attrs.get("fixed_params", {})},
            runs=len(runs),
        )
    return out


def _rank(c: Mapping[str, Any]) -> tuple[float, float, int]:
    n_params = c.get("n_params")
    return (c["median"], math.inf if n_params is None else n_params, c["trial"])


def compute_answer(trials: Iterable[FrozenTrial], confirm_seeds: int) -> Configuration | None:
    """The confirmed configuration with the lowest median epochs-to-target over at least
    ``confirm_seeds`` runs (ties: fewer parameters, then the earlier trial); None if no
    configuration has that many runs with a median that reached the target."""
    if confirm_seeds < 2:
        return None
    done = [c for c in configurations(trials).values() if c["runs"] >= confirm_seeds and c.reached]
    if not done:
        return None
    best = min(done, key=_rank)
    best["confirm_seeds"] = confirm_seeds
    return best


def _beats(median: float, n_params: Any, answer: Mapping[str, Any]) -> bool:
    theirs = answer.get("n_params")
    if median != answer["median"]:
        return median < answer["median"]
    return n_params is not None and theirs is not None and n_params < theirs


def repeat_budget(
    trials: Sequence[FrozenTrial],
    repeat: FrozenTrial,
    answer: Mapping[str, Any] | None,
    confirm_seeds: int,
    max_epochs: int,
    step: float = 1.0,
) -> float | None:
    """Epochs the repeat ``repeat`` may train before its configuration can no longer beat the answer.

    None: no limit (no answer yet, the repeat belongs to the answer, or the configuration wins
    even if this run never reaches the target); 0: it cannot win, whatever this run gives.  The
    configuration's other pending runs are assumed to reach the target at the first check
    (``step`` epochs), the best they could do.
    """
    root = _group(repeat)
    if answer is None or answer.get("trial") == root:
        return None
    others = [t for t in trials if _group(t) == root and _is_run(t) and t.number != repeat.number]
    done = [_epochs(t) for t in others]
    pending = max(0, confirm_seeds - 1 - len(done))
    n_params = repeat.user_attrs.get("n_params")
    if n_params is None and others:
        n_params = others[0].user_attrs.get("n_params")

    def wins(x: float | None) -> bool:
        return _beats(_median([*done, x, *([step] * pending)]), n_params, answer)

    if wins(None):
        return None
    checks = [round((k + 1) * step, 6) for k in range(int(math.ceil(max_epochs / step - 1e-9)))]
    winning = [x for x in checks if wins(x)]
    return winning[-1] if winning else 0.0


def confirmation_cost(trials: Iterable[FrozenTrial]) -> dict[str, float]:
    """What confirming and capping did in a study: ``repeats`` (finished), ``dropped`` (of them),
    ``repeat_epochs`` and ``epochs`` (training epochs of the repeats and of every finished
    trial), ``capped`` (trials)."""
    finished = [t for t in trials if t.state.is_finished()]
    repeats = [t for t in finished if t.user_attrs.get("repeat_of") is not None]
    return {
        "repeats": len(repeats),
        "dropped": sum(t.user_attrs.get("stop_reason") == "dropped" for t in repeats),
        "repeat_epochs": sum(t.user_attrs.get("epochs") or 0 for t in repeats),
        "epochs": sum(t.user_attrs.get("epochs") or 0 for t in finished),
        "capped": sum(t.user_attrs.get("stop_reason") == "capped" for t in finished),
    }


def format_runs(config: Mapping[str, Any]) -> str:
    """``"7 epochs (median of 3 seeds: 6, 7, 8)"``; a run that missed the target is "not reached"."""
    ordered = sorted(config["epochs"], key=lambda e: math.inf if e is None else e)
    runs = ", ".join("not reached" if e is None else f"{e:g}" for e in ordered)
    median = config["median"]
    head = f"{median:g} epochs" if math.isfinite(median) else "not reached"
    return f"{head} (median of {len(config['epochs'])} seeds: {runs})"


def answer_line(answer: Mapping[str, Any] | None, confirm_seeds: int) -> str:
    """One line for the summary, ``list`` and the note: the answer, or that none is confirmed."""
    if confirm_seeds < 2:
        return "confirmation off (study.confirm_seeds < 2): the best single trial is the answer"
    if not answer:
        return f"no confirmed answer yet (a configuration needs {confirm_seeds} runs over seeds)"
    return f"{format_runs(answer)}, trial {answer['trial']} and its repeats {answer['trials'][1:]}"


def stored_answer(study: optuna.Study) -> dict[str, Any] | None:
    value = study.user_attrs.get(ANSWER_ATTR)
    return value if isinstance(value, dict) and "median" in value else None


class Confirmation:
    """Optuna callback (after each trial is stored): enqueue the repeats a fast trial earns and
    keep the study's ``answer`` attribute current.

    Args:
        confirm_seeds: runs a configuration needs to be an answer (the original counts as one).
        on_answer: called with ``(study, answer)`` when the stored answer changed (the note).
    """

    def __init__(self, confirm_seeds: int, on_answer: Any = None):
        if confirm_seeds < 2:
            raise ValueError(f"confirm_seeds must be >= 2 to confirm, but got {confirm_seeds=}.")
        self.confirm_seeds = int(confirm_seeds)
        self.on_answer = on_answer
        self.enqueued: dict[int, int] = {}  # original trial -> repeats enqueued by this process

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False)
        answer = compute_answer(trials, self.confirm_seeds)
        self._store(study, answer)
        epochs = _epochs(trial) if trial.state == TrialState.COMPLETE else None
        if trial.user_attrs.get("repeat_of") is not None or epochs is None:
            return
        if answer is not None and epochs >= answer["median"]:
            return
        for _ in range(self.confirm_seeds - 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.enqueue_trial(dict(trial.params), user_attrs={"repeat_of": trial.number})
        self.enqueued[trial.number] = self.confirm_seeds - 1

    def _store(self, study: optuna.Study, answer: Configuration | None) -> None:
        old = stored_answer(study)
        new = dict(answer) if answer is not None else None
        if new == old:
            return
        study.set_user_attr(ANSWER_ATTR, new)
        if self.on_answer is not None:
            self.on_answer(study, new)
