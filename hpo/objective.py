"""``Objective(trial) -> float``: sample, build, train, record.

The value is the trial's epochs-to-target, or ``max_epochs + 1 + (target - best)`` when the
target was not reached (see :mod:`hpo.callbacks`).  Every finished trial, pruned ones included,
carries the user attributes listed in :data:`TRIAL_ATTRS` and its per-epoch history in the system
attribute ``history`` (:func:`hpo.study.trial_history` reads it), out of the dashboard's tables.

Faults inside one trial never stop the study:

* a NaN or infinite loss ends training; the trial is COMPLETE with the not-reached cost
  (``stop_reason = "nan"``), so the sampler learns that the region is bad;
* a model with more than ``objective.max_params`` parameters is not built (a custom family's
  model, which has no formula, is built to be counted, and not trained): COMPLETE with the
  worst not-reached cost, ``max_epochs + 1 + target`` (``stop_reason = "too_large"``), so the
  sampler does not propose it again and again, as it would for a failed trial;
* any other exception (out of memory, ...) raises :class:`hpo.errors.TrialFailed`: the trial is
  FAIL with the error's first line in the ``error`` user attribute (``stop_reason = "error"``);
* Ctrl-C/SIGTERM (:class:`KeyboardInterrupt`) marks the trial ``stop_reason = "interrupted"``
  and propagates (Optuna stores the trial as FAIL).

With ``study.seed`` set, each trial seeds Python, NumPy and TensorFlow with ``seed + number``,
so the same study file gives the same trials on one machine (docs/PERFORMANCE.md says what may
differ elsewhere); ``study.deterministic_ops`` adds TensorFlow's deterministic ops.
"""

from __future__ import annotations

import gc
import math
import random
import time
from collections.abc import Callable
from typing import Any

import keras
import optuna

from hpo import models, space
from hpo.answer import repeat_budget, stored_answer
from hpo.callbacks import TargetPruning, not_reached_cost
from hpo.config import StudyConfig
from hpo.data import Split
from hpo.errors import HpoError, TrialFailed
from hpo.search import EPOCH_FRACTION_ATTR
from hpo.study import HISTORY_ATTR, store_history

__all__ = ["Objective", "TrialOutcome", "TRIAL_ATTRS", "enable_determinism", "epoch_times", "trial_seed"]

TRIAL_ATTRS = (
    "family",
    "epochs_to_target",
    "reached_target",
    "stop_reason",
    "n_params",
    "seconds",
    "seconds_per_epoch",
    "compile_seconds",
    "seconds_to_target",
    "epochs",
    "seed",
)
SEED_RANGE = 2**31  # trial seeds are taken modulo this (keras.utils.set_random_seed wants < 2**32)
EVAL_BATCH = 1024  # validation batch size: larger is faster and does not change the metric


class _Tensors:
    """The split's arrays as TensorFlow tensors, made once per process for the latest split.

    Handing Keras NumPy arrays makes it copy and slice them into a new input pipeline at every
    ``fit`` (~0.8 s per trial for Fashion-MNIST here); a pipeline over tensors made once
    costs nothing per trial.
    """

    held: tuple[Split, Any, Any, Any] | None = None

    @classmethod
    def of(cls, split: Split) -> tuple[Any, Any, Any]:
        """``(x_train, y_train, validation dataset)``."""
        import tensorflow as tf

        if cls.held is None or cls.held[0] is not split:
            cls.held = None
            xs, ys = tf.constant(split.x_train), tf.constant(split.y_train)
            val = tf.data.Dataset.from_tensor_slices((tf.constant(split.x_val), tf.constant(split.y_val))).batch(EVAL_BATCH)
            cls.held = (split, xs, ys, val)
        return cls.held[1], cls.held[2], cls.held[3]


class Schedule:
    """How one trial's training is cut into checks (Keras epochs) of the target and pruner.

    With one check per epoch, each Keras epoch is one shuffled pass over the training data.
    With ``k`` checks per epoch, the training data becomes an endless shuffled stream of
    batches and each Keras epoch is ``steps`` batches, a multiple of the steps per execution,
    so that every check sees the same amount of new data: ``fraction = steps * batch_size / n``
    of a pass (close to ``1/k``).
    """

    def __init__(self, n: int, batch_size: int, max_epochs: int, checks_per_epoch: int):
        self.steps_per_execution = models.STEPS_PER_EXECUTION
        self.steps: int | None = None
        self.fraction = 1.0
        self.keras_epochs = max_epochs
        if checks_per_epoch > 1:
            steps = max(1, round(n / batch_size / checks_per_epoch))
            spe = min(models.STEPS_PER_EXECUTION, steps)
            steps = math.ceil(steps / spe) * spe
            if steps * batch_size < n:  # else one check would hold a whole pass: plain epochs
                self.steps_per_execution = spe
                self.steps = steps
                self.fraction = steps * batch_size / n
                self.keras_epochs = math.ceil(max_epochs / self.fraction - 1e-9)

    def fit_args(self, split: Split, batch_size: int, seed: int | None) -> dict[str, Any]:
        """Keyword arguments of ``model.fit``: training pipeline, epochs, validation data."""
        import tensorflow as tf

        xs, ys, val = _Tensors.of(split)
        n = int(xs.shape[0])
        order = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
        if self.steps is not None:
            order = order.repeat()
        batches = (
            order.batch(batch_size)
            .map(lambda i: (tf.gather(xs, i), tf.gather(ys, i)), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )
        return {
            "x": batches,
            "steps_per_epoch": self.steps,
            "epochs": self.keras_epochs,
            "shuffle": False,  # the pipeline shuffles
            "validation_data": val,
        }


def enable_determinism() -> None:
    """TensorFlow's deterministic op implementations, for this whole process (it cannot be undone).

    Keras then compiles without XLA (it does not trust XLA's determinism), which costs the speed
    measured in docs/PERFORMANCE.md.
    """
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def trial_seed(cfg: StudyConfig, number: int) -> int:
    """The seed trial ``number`` trains with: ``study.seed + number``, else a fresh random one."""
    if cfg.study.seed is None:
        return random.SystemRandom().randrange(SEED_RANGE)
    return (cfg.study.seed + number) % SEED_RANGE


def epoch_times(epoch_seconds: list[float], fraction: float, reached: bool) -> dict[str, float | None]:
    """``seconds_per_epoch`` (steady epochs only: all but the first), ``compile_seconds`` (what
    the first epoch took beyond a steady one: tracing and XLA) and ``seconds_to_target``
    (training seconds until the target was met).  One epoch alone cannot be split: then the
    first two are None."""
    steady = epoch_seconds[1:]
    per_check = sum(steady) / len(steady) if steady else None
    return {
        "seconds_per_epoch": round(per_check / fraction, 4) if per_check is not None else None,
        "compile_seconds": round(max(0.0, epoch_seconds[0] - per_check), 4) if per_check is not None else None,
        "seconds_to_target": round(sum(epoch_seconds), 4) if reached and epoch_seconds else None,
    }


class TrialOutcome(dict):
    """What one trial recorded, as a dict: its user attributes and its ``history``."""


class Objective:
    """The study's objective; data is given once and reused by every trial."""

    def __init__(
        self,
        cfg: StudyConfig,
        split: Split,
        *,
        callbacks: tuple[Callable[[optuna.Trial, keras.Model, TrialOutcome], None], ...] = (),
        keras_callbacks: tuple[Callable[[optuna.Trial], keras.callbacks.Callback], ...] = (),
        on_trained: Callable[[optuna.Trial], None] | None = None,
    ):
        self.cfg = cfg
        self.split = split
        self.callbacks = callbacks  # after a trial finished training (artifacts, ...)
        # Factories of extra Keras callbacks, called once per trial (TensorBoard, ...).  They
        # run before the target/pruning callback, so they also see the epoch a trial stops at.
        self.keras_callbacks = keras_callbacks
        # Called when training is over (or was not started) and recording begins: the CLI
        # holds a signal back from then on, so that a trained trial is stored whole.
        self.on_trained = on_trained
        if cfg.study.deterministic_ops:
            enable_determinism()

    def __call__(self, trial: optuna.Trial) -> float:
        keras.backend.clear_session()  # and gc.collect()
        if not gc.get_freeze_count():
            # What lives now (modules, data) lives as long as the process: keep it out of every
            # later collection, which then takes milliseconds instead of ~0.5 s per trial.
            gc.freeze()
        obj = self.cfg.objective
        params = space.sample(trial, self.cfg)
        trial.set_user_attr("family", params.family)
        if params.fixed:
            trial.set_user_attr("fixed_params", dict(params.fixed))
        seed = trial_seed(self.cfg, trial.number)
        trial.set_user_attr("seed", seed)
        keras.utils.set_random_seed(seed)
        schedule = Schedule(len(self.split.x_train), params.batch_size, obj.max_epochs, obj.checks_per_epoch)
        if schedule.fraction != 1:
            trial.set_user_attr(EPOCH_FRACTION_ATTR, schedule.fraction)
        repeat = trial.user_attrs.get("repeat_of") is not None
        budget = self._repeat_budget(trial, schedule.fraction) if repeat else None
        cb = TargetPruning(
            trial,
            obj.monitor,
            obj.target,
            obj.max_epochs,
            schedule.fraction,
            mode="max",
            prune=not repeat,
            stop_after=budget or None,
            setting="objective.monitor",
        )
        started = time.perf_counter()
        try:  # the custom family builds its model to count it (models.measure): the user's code may raise
            model, n_params = models.measure(params, self.split.image_shape, self.split.n_classes)
        except HpoError:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("stop_reason", "interrupted")
            raise
        except Exception as e:
            raise self._failed(trial, e, None) from e
        if budget == 0:  # its configuration cannot beat the answer any more: not trained
            cb.stop_reason = "dropped"
            self._record(trial, None, cb, n_params, started)
            raise optuna.TrialPruned(f"repeat of trial {trial.user_attrs['repeat_of']} dropped: it can no longer beat the answer")
        if obj.max_params and n_params > obj.max_params:
            return self._too_large(trial, cb, n_params, started)
        try:
            extra = [make(trial) for make in self.keras_callbacks]
            if model is None:
                model = models.build(params, self.split.image_shape, self.split.n_classes)
            steps = math.ceil(len(self.split.x_train) / params.batch_size)  # batches per pass over the data
            models.compile_model(model, params, steps_per_execution=schedule.steps_per_execution, steps_per_epoch=steps)
            trial.set_user_attr("xla", bool(model.jit_compile))
            model.fit(**schedule.fit_args(self.split, params.batch_size, seed), callbacks=[*extra, cb], verbose=0)
        except optuna.TrialPruned:
            self._record(trial, model, cb, n_params, started)
            raise
        except (HpoError, optuna.exceptions.UpdateFinishedTrialError):
            raise  # the last: another worker failed this trial, nothing can be recorded on it
        except KeyboardInterrupt:
            trial.set_user_attr("stop_reason", "interrupted")
            raise
        except Exception as e:
            raise self._failed(trial, e, n_params) from e
        self._record(trial, model, cb, n_params, started)
        if cb.last_cost is None:  # no epoch ran
            return not_reached_cost(obj.max_epochs, obj.target, -math.inf)
        return float(cb.last_cost)

    def _failed(self, trial: optuna.Trial, e: Exception, n_params: int | None) -> TrialFailed:
        """The trial's error recorded (``stop_reason = "error"``), as the exception that fails it."""
        line = (str(e).strip().splitlines() or [type(e).__name__])[0][:500]
        trial.set_user_attr("stop_reason", "error")
        trial.set_user_attr("error", f"{type(e).__name__}: {line}")
        if n_params is not None:
            trial.set_user_attr("n_params", n_params)
        return TrialFailed(f"{type(e).__name__}: {line}")

    def _repeat_budget(self, trial: optuna.Trial, step: float) -> float | None:
        """Epochs a confirmation repeat may train (None: no limit, 0: not at all); see :mod:`hpo.answer`."""
        if not self.cfg.study.confirming or trial.user_attrs.get("race") is False:
            return None
        study = trial.study
        trials = study.get_trials(deepcopy=False)
        return repeat_budget(
            trials,
            next(t for t in trials if t.number == trial.number),
            stored_answer(study),
            self.cfg.study.confirm_seeds,
            self.cfg.objective.max_epochs,
            step,
        )

    def _too_large(self, trial: optuna.Trial, cb: TargetPruning, n_params: int, started: float) -> float:
        """A model over ``objective.max_params``: not built, recorded with the worst not-reached cost."""
        cb.stop_reason = "too_large"
        self._record(trial, None, cb, n_params, started)
        return not_reached_cost(self.cfg.objective.max_epochs, self.cfg.objective.target, -math.inf)

    def _record(
        self,
        trial: optuna.Trial,
        model: keras.Model | None,
        cb: TargetPruning,
        n_params: int,
        started: float,
    ) -> TrialOutcome:
        if self.on_trained is not None:
            self.on_trained(trial)
        seconds = time.perf_counter() - started
        best = cb.best if math.isfinite(cb.best) else None
        timing = epoch_times(cb.history.get("epoch_seconds", []), cb.epoch_fraction, cb.epochs_to_target is not None)
        outcome = TrialOutcome(
            family=trial.user_attrs.get("family"),
            epochs_to_target=cb.epochs_to_target,
            reached_target=cb.epochs_to_target is not None,
            stop_reason=cb.stop_reason or "pruned",
            n_params=n_params,
            seconds=round(seconds, 3),
            **timing,
            epochs=cb.epochs_run,
            history={k: [round(v, 6) for v in vs] for k, vs in cb.history.items()},
        )
        outcome[f"best_{cb.monitor}"] = round(best, 6) if best is not None else None
        outcome["seed"] = trial.user_attrs.get("seed")
        for key, value in outcome.items():
            if key != HISTORY_ATTR:
                trial.set_user_attr(key, value)
        store_history(trial, outcome[HISTORY_ATTR])
        for callback in self.callbacks:
            callback(trial, model, outcome)
        return outcome
