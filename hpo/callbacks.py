"""The pruning-plus-target callback, for hpo's objective and for anyone's Optuna + Keras one.

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

from hpo.errors import MonitorError

__all__ = ["MODES", "TargetPruning", "cost", "infer_mode", "not_reached_cost"]

MODES = ("max", "min")
# Metric names (as Keras logs them, without "val_") whose direction ``mode="auto"`` knows.
_HIGHER = ("acc", "auc", "precision", "recall", "f1", "iou", "r2")
_LOWER = ("loss", "error", "mae", "mse", "mape", "msle", "hinge", "crossentropy", "divergence")
ALIASES = {"val_acc": "val_accuracy", "acc": "accuracy"}  # Keras 3 logs "accuracy"


def infer_mode(monitor: str) -> str | None:
    """``"max"`` or ``"min"`` for a metric name Keras logs, None when the name does not tell."""
    name = monitor.lower()
    if any(k in name for k in _LOWER):
        return "min"
    if any(k in name for k in _HIGHER):
        return "max"
    return None


def _gap(target: float, best: float, mode: str) -> float:
    if not math.isfinite(best):
        return abs(target)
    return max(0.0, target - best) if mode == "max" else max(0.0, best - target)


def not_reached_cost(max_epochs: int, target: float, best: float, mode: str = "max") -> float:
    """Cost of a trial that has not reached the target: ``max_epochs + 1 + gap``, the gap
    between the target and the best value logged (``|target|`` when none was finite).

    Always above ``max_epochs``, so any trial that reached the target is cheaper; among those
    that did not, the one that came closer is cheaper.
    """
    return max_epochs + 1 + _gap(target, best, mode)


def cost(max_epochs: int, target: float, best: float, epochs_to_target: float | None, mode: str = "max") -> float:
    """The objective: ``epochs_to_target`` when reached, else :func:`not_reached_cost`."""
    if epochs_to_target is not None:
        return float(epochs_to_target)
    return not_reached_cost(max_epochs, target, best, mode)


class TargetPruning(keras.callbacks.Callback):
    """Report to Optuna each epoch; stop at the target; prune otherwise if the pruner says so.

    ``monitor`` is any metric Keras logs (``val_accuracy``, ``val_loss``, ``val_auc``, ...) and
    ``mode`` says which way is better: ``"max"`` (reached when the value is >= ``target``),
    ``"min"`` (<= ``target``), or ``"auto"`` (from the name: losses and errors ``min``,
    accuracies, AUC, precision, recall ``max``; other names need ``mode``).  Training stops at
    the target, or after ``max_epochs`` epochs whatever ``fit(epochs=...)`` asked for.

    Order within an epoch: report the cost, then the target check (which wins), then
    ``trial.should_prune()`` -> :class:`optuna.TrialPruned`.  A NaN or infinite loss stops
    training with ``stop_reason = "nan"``.  After training, :attr:`stop_reason`,
    :attr:`epochs_to_target`, :attr:`best`, :attr:`last_cost` and :attr:`history` (Keras'
    logs per epoch, plus ``epoch`` and ``epoch_seconds``) describe what happened; the
    objective's value is :attr:`last_cost`.

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
        mode: str = "auto",
        prune: bool = True,
        stop_after: float | None = None,
        setting: str | None = None,
    ):
        super().__init__()
        where = setting or "TargetPruning"
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(
                f"{where}: monitor must be the name of a metric Keras logs, e.g. 'val_accuracy', but got {monitor!r}"
            )
        monitor = ALIASES.get(monitor, monitor)
        if mode == "auto":
            mode = infer_mode(monitor)
            if mode is None:
                raise ValueError(f"{where}: cannot tell whether {monitor!r} should go up or down: pass mode='max' or mode='min'")
        if mode not in MODES:
            raise ValueError(f"{where}: mode must be 'max', 'min' or 'auto', but got {mode!r}")
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target):
            raise ValueError(f"{where}: target must be a finite number, but got {target!r}")
        if infer_mode(monitor) == "max" and "acc" in monitor and not 0 < target <= 1:
            raise ValueError(f"{where}: an accuracy target must be in (0, 1], but got target={target!r}")
        if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
            raise ValueError(f"{where}: max_epochs must be a whole number >= 1, but got max_epochs={max_epochs!r}")
        if not 0 < epoch_fraction <= 1:
            raise ValueError(f"{where}: epoch_fraction must be in (0, 1], but got epoch_fraction={epoch_fraction!r}")
        self.trial = trial
        self.monitor = monitor
        self.mode = mode
        self.target = float(target)
        self.max_epochs = int(max_epochs)
        self.epoch_fraction = float(epoch_fraction)
        self.prune = prune  # False: never ask the pruner (a confirmation repeat)
        self.stop_after = stop_after  # epochs after which a run that missed the target is dropped
        self.setting = setting  # what the user set the monitor with, for error messages
        self._reset()

    def _reset(self) -> None:
        self.best = -math.inf if self.mode == "max" else math.inf
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
        what = f"{self.setting}: {self.monitor!r}" if self.setting else f"TargetPruning(monitor={self.monitor!r})"
        raise MonitorError(f"{what} is not among the metrics Keras logged ({', '.join(sorted(logs)) or 'none'})")

    def reached(self, value: float) -> bool:
        return value >= self.target if self.mode == "max" else value <= self.target

    def _cost(self, epochs_to_target: float | None) -> float:
        return cost(self.max_epochs, self.target, self.best, epochs_to_target, self.mode)

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
            self.last_cost = self._cost(None)
            self.trial.report(self.last_cost, step=epoch)
            self.model.stop_training = True
            return
        self.best = max(self.best, value) if self.mode == "max" else min(self.best, value)
        reached = self.reached(value)
        self.last_cost = self._cost(self.epochs_run if reached else None)
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
                f"{self.stop_reason} after epoch {self.epochs_run:g}: {self.monitor} {value:.4f} "
                f"{'<' if self.mode == 'max' else '>'} {self.target}"
            )
        if self.epochs_run >= self.max_epochs - 1e-9:  # whatever fit(epochs=...) asked for
            self.stop_reason = "max_epochs"
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.stop_reason is None:
            self.stop_reason = "max_epochs"
