"""The pruning-plus-target callback.

Every epoch it reports the trial's cost *in the objective's own unit* (what the trial would
cost if it ended now), stops training as soon as the monitored metric reaches the target, and
otherwise asks Optuna's pruner.  See :func:`cost` for the unit.
"""

from __future__ import annotations

import math
import time
from typing import Any

import keras
import optuna

from hpo.config import MONITORS
from hpo.errors import MonitorError

__all__ = ["TargetPruning", "cost", "not_reached_cost"]


def not_reached_cost(max_epochs: int, target: float, best: float) -> float:
    """Cost of a trial that has not reached the target: ``max_epochs + 1 + (target - best)``.

    Always above ``max_epochs``, so any trial that reached the target is cheaper; among those
    that did not, the one that came closer is cheaper.
    """
    if not math.isfinite(best):
        best = 0.0
    return max_epochs + 1 + (target - best)


def cost(max_epochs: int, target: float, best: float, epochs_to_target: float | None) -> float:
    """The objective: ``epochs_to_target`` when reached, else :func:`not_reached_cost`."""
    if epochs_to_target is not None:
        return float(epochs_to_target)
    return not_reached_cost(max_epochs, target, best)


class TargetPruning(keras.callbacks.Callback):
    """Report to Optuna each epoch; stop at the target; prune otherwise if the pruner says so.

    Order within an epoch: report the cost, then the target check (which wins), then
    ``trial.should_prune()`` -> :class:`optuna.TrialPruned`.  A NaN or infinite loss stops
    training with ``stop_reason = "nan"``.  After training, :attr:`stop_reason`,
    :attr:`epochs_to_target`, :attr:`best`, :attr:`last_cost` and :attr:`history` (Keras'
    logs per epoch, plus ``epoch`` and ``epoch_seconds``) describe what happened.

    ``prune=False`` never asks the pruner (repeats that confirm an answer run to the target or
    to ``max_epochs``); ``stop_after`` stops a run that has not reached the target after that
    many epochs (``stop_reason = "dropped"``, raised as :class:`optuna.TrialPruned`).  When the
    study's pruner is an :class:`hpo.search.EpochCap` that capped the trial, the stop reason is
    ``capped``.

    With sub-epoch checks, each Keras "epoch" is a part of a pass over the training data:
    ``epoch_fraction`` is the share of a pass it holds, so the epochs counted (``epoch`` in
    the history, :attr:`epochs_to_target`, :attr:`epochs_run`) are fractional, while the step
    reported to the pruner is the number of the check.
    """

    def __init__(
        self,
        trial: optuna.trial.BaseTrial,
        monitor: str = "val_accuracy",
        target: float = 0.88,
        max_epochs: int = 15,
        epoch_fraction: float = 1.0,
        *,
        prune: bool = True,
        stop_after: float | None = None,
    ):
        super().__init__()
        if not 0 < epoch_fraction <= 1:
            raise ValueError(f"epoch_fraction must be in (0, 1], but got {epoch_fraction=}.")
        if monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {', '.join(MONITORS)}, but got {monitor=}.")
        if not 0 < target <= 1:
            raise ValueError(f"target must be in (0, 1], but got {target=}.")
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, but got {max_epochs=}.")
        self.trial = trial
        self.monitor = MONITORS[monitor]
        self.target = float(target)
        self.max_epochs = int(max_epochs)
        self.epoch_fraction = float(epoch_fraction)
        self.prune = prune  # False: never ask the pruner (a confirmation repeat)
        self.stop_after = stop_after  # epochs after which a run that missed the target is dropped
        self._reset()

    def _reset(self) -> None:
        self.best = -math.inf
        self.epochs_to_target: float | None = None
        self.stop_reason: str | None = None
        self.last_cost: float | None = None
        self.epochs_run: float = 0
        self.history: dict[str, list[float]] = {}
        self._epoch_started = time.perf_counter()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def _value(self, logs: dict[str, Any]) -> float:
        for key in (self.monitor, self.monitor.replace("accuracy", "acc")):
            if key in logs:
                return float(logs[key])
        raise MonitorError(
            f"objective.monitor: {self.monitor!r} is not among the metrics Keras logged ({', '.join(sorted(logs)) or 'none'})"
        )

    def epochs_after(self, epoch: int) -> float:
        """Epochs of training data seen after Keras epoch ``epoch`` (0-based) ends."""
        if self.epoch_fraction == 1:
            return epoch + 1
        return round((epoch + 1) * self.epoch_fraction, 4)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.history.setdefault("epoch_seconds", []).append(time.perf_counter() - self._epoch_started)
        self.epochs_run = self.epochs_after(epoch)
        if self.epoch_fraction != 1:
            self.history.setdefault("epoch", []).append(self.epochs_run)
        value = self._value(logs)
        loss = float(logs.get("loss", math.nan))
        if not math.isfinite(loss) or not math.isfinite(value):
            self.stop_reason = "nan"
            self.last_cost = not_reached_cost(self.max_epochs, self.target, self.best)
            self.trial.report(self.last_cost, step=epoch)
            self.model.stop_training = True
            return
        self.best = max(self.best, value)
        reached = value >= self.target
        self.last_cost = cost(self.max_epochs, self.target, self.best, self.epochs_run if reached else None)
        self.trial.report(self.last_cost, step=epoch)
        if reached:
            self.epochs_to_target = self.epochs_run
            self.stop_reason = "target"
            self.model.stop_training = True
            return
        if self.stop_after is not None and self.epochs_run >= self.stop_after - 1e-9:
            self.stop_reason = "dropped"
            raise optuna.TrialPruned(f"dropped after epoch {self.epochs_run:g}: its configuration can no longer beat the answer")
        if self.prune and self.trial.should_prune():
            capped = getattr(getattr(getattr(self.trial, "study", None), "pruner", None), "capped", ())
            self.stop_reason = "capped" if self.trial.number in capped else "pruned"
            raise optuna.TrialPruned(
                f"{self.stop_reason} after epoch {self.epochs_run:g}: {self.monitor} {value:.4f} < {self.target}"
            )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.stop_reason is None:
            self.stop_reason = "max_epochs"
