"""Pruners for objectives that report hpo's cost unit (see :mod:`hpo.callbacks`).

:class:`EpochCap` is adaptive capping as runtime minimisers do it (ParamILS, SMAC): a trial that
has not reached the target after the answer's epochs (plus a slack) cannot beat the answer, so
it stops, whatever the pruner it wraps would say.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from optuna.pruners import BasePruner
from optuna.trial import TrialState

if TYPE_CHECKING:
    import optuna

__all__ = ["EpochCap"]

EPOCH_FRACTION_ATTR = "epoch_fraction"  # trial user attr: epochs of data per step (sub-epoch checks)


class EpochCap(BasePruner):
    """Stop trials that can no longer beat the study's answer; otherwise ask ``inner``.

    A trial reports, at step ``s``, its cost so far: its epochs-to-target once reached (at most
    ``max_epochs``), else more than ``max_epochs``.  After ``(s + 1) * f`` epochs (``f``: the
    trial's user attribute ``epoch_fraction``, 1 unless it checks more than once per epoch) a
    trial that has not reached the target is pruned once that is at least the bound
    ``ceil(median) + slack``, ``median`` being the study's confirmed answer (study user attribute
    ``answer``, see :mod:`hpo.answer`) or, before there is one, the fewest epochs any COMPLETE
    trial took to reach the target.  Before any trial reached the target, nothing is capped.
    The bound is read from the storage at every check, so it holds across workers.

    Args:
        inner: the pruner consulted when the cap does not stop the trial (None: only the cap).
        max_epochs: the objective's ``max_epochs``: values above it mean "not reached".
        slack: epochs a trial may go on beyond ``ceil(median)``.
        answer_attr: the study user attribute holding the answer (a dict with ``median``).
    """

    def __init__(self, inner: BasePruner | None, max_epochs: int, slack: int = 1, answer_attr: str = "answer"):
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, but got {max_epochs=}.")
        if slack < 0:
            raise ValueError(f"slack must be >= 0, but got {slack=}.")
        self.inner = inner
        self.max_epochs = int(max_epochs)
        self.slack = slack
        self.answer_attr = answer_attr
        self.capped: set[int] = set()  # numbers of the trials this pruner capped (not the inner's)

    def bound(self, study: optuna.Study) -> float | None:
        """Epochs after which a trial that has not reached the target is capped (None: no bound)."""
        answer = study.user_attrs.get(self.answer_attr)
        if isinstance(answer, dict) and isinstance(answer.get("median"), (int, float)) and math.isfinite(answer["median"]):
            best = float(answer["median"])
        else:
            reached = [
                t.value
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and t.value <= self.max_epochs
            ]
            if not reached:
                return None
            best = min(reached)
        return math.ceil(best - 1e-9) + self.slack

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        if trial.intermediate_values[step] > self.max_epochs:  # not reached yet
            epochs = (step + 1) * float(trial.user_attrs.get(EPOCH_FRACTION_ATTR, 1.0))
            bound = self.bound(study)
            if bound is not None and epochs >= bound - 1e-9:
                self.capped.add(trial.number)
                return True
        return self.inner.prune(study, trial) if self.inner is not None else False
