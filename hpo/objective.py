"""``Objective(trial) -> float``: sample, build, train, record.

The value is the trial's epochs-to-target, or ``max_epochs + 1 + (target - best)`` when the
target was not reached (see :mod:`hpo.callbacks`).  Every finished trial, pruned ones included,
carries the user attributes listed in :data:`TRIAL_ATTRS`.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable

import keras
import optuna

from hpo import models, space
from hpo.callbacks import TargetPruning, not_reached_cost
from hpo.config import StudyConfig
from hpo.data import Split
from hpo.errors import HpoError, TrialFailed

__all__ = ["Objective", "TrialOutcome", "TRIAL_ATTRS"]

TRIAL_ATTRS = (
    "family",
    "epochs_to_target",
    "reached_target",
    "stop_reason",
    "n_params",
    "seconds",
    "seconds_per_epoch",
    "epochs",
    "history",
)
EVAL_BATCH = 1024  # validation batch size: larger is faster and does not change the metric


class TrialOutcome(dict):
    """What one trial recorded (the user attributes, as a dict)."""


class Objective:
    """The study's objective; data is given once and reused by every trial."""

    def __init__(
        self,
        cfg: StudyConfig,
        split: Split,
        *,
        callbacks: tuple[Callable[[optuna.Trial, keras.Model, TrialOutcome], None], ...] = (),
        keras_callbacks: tuple[Callable[[optuna.Trial], keras.callbacks.Callback], ...] = (),
    ):
        self.cfg = cfg
        self.split = split
        self.callbacks = callbacks  # after a trial finished training (artifacts, ...)
        # Factories of extra Keras callbacks, called once per trial (TensorBoard, ...).  They
        # run before the target/pruning callback, so they also see the epoch a trial stops at.
        self.keras_callbacks = keras_callbacks

    def __call__(self, trial: optuna.Trial) -> float:
        keras.backend.clear_session()
        gc.collect()
        obj = self.cfg.objective
        params = space.sample(trial, self.cfg)
        trial.set_user_attr("family", params.family)
        if params.fixed:
            trial.set_user_attr("fixed_params", dict(params.fixed))
        if self.cfg.study.seed is not None:
            keras.utils.set_random_seed(self.cfg.study.seed + trial.number)
        cb = TargetPruning(trial, obj.monitor, obj.target, obj.max_epochs)
        extra = [make(trial) for make in self.keras_callbacks]
        started = time.perf_counter()
        model = None
        n_params = None
        fit_seconds = 0.0
        try:
            model = models.build(params, self.split.image_shape, self.split.n_classes)
            n_params = int(model.count_params())
            models.compile_model(model, params)
            fit_started = time.perf_counter()
            try:
                model.fit(
                    self.split.x_train,
                    self.split.y_train,
                    batch_size=params.batch_size,
                    epochs=obj.max_epochs,
                    validation_data=(self.split.x_val, self.split.y_val),
                    validation_batch_size=EVAL_BATCH,
                    callbacks=[*extra, cb],
                    verbose=0,
                )
            finally:
                fit_seconds = time.perf_counter() - fit_started
        except optuna.TrialPruned:
            self._record(trial, model, cb, n_params, started, fit_seconds)
            raise
        except (HpoError, KeyboardInterrupt, optuna.exceptions.UpdateFinishedTrialError):
            raise  # the last: another worker failed this trial, nothing can be recorded on it
        except Exception as e:
            line = (str(e).strip().splitlines() or [type(e).__name__])[0][:500]
            trial.set_user_attr("stop_reason", "error")
            trial.set_user_attr("error", f"{type(e).__name__}: {line}")
            raise TrialFailed(f"{type(e).__name__}: {line}") from e
        self._record(trial, model, cb, n_params, started, fit_seconds)
        if cb.last_cost is None:  # no epoch ran
            return not_reached_cost(obj.max_epochs, obj.target, -math.inf)
        return float(cb.last_cost)

    def _record(
        self,
        trial: optuna.Trial,
        model: keras.Model | None,
        cb: TargetPruning,
        n_params: int | None,
        started: float,
        fit_seconds: float,
    ) -> TrialOutcome:
        seconds = time.perf_counter() - started
        best = cb.best if math.isfinite(cb.best) else None
        outcome = TrialOutcome(
            family=trial.user_attrs.get("family"),
            epochs_to_target=cb.epochs_to_target,
            reached_target=cb.epochs_to_target is not None,
            stop_reason=cb.stop_reason or "pruned",
            n_params=n_params,
            seconds=round(seconds, 3),
            seconds_per_epoch=round(fit_seconds / cb.epochs_run, 4) if cb.epochs_run else None,
            epochs=cb.epochs_run,
            history={k: [round(v, 6) for v in vs] for k, vs in cb.history.items()},
        )
        outcome[f"best_{cb.monitor}"] = round(best, 6) if best is not None else None
        for key, value in outcome.items():
            trial.set_user_attr(key, value)
        for callback in self.callbacks:
            callback(trial, model, outcome)
        return outcome
