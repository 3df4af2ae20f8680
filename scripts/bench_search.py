"""hpo against the tools a Keras user would pick, side by side, on hpo's question.

One search space (the main job's, ``[space.dense]`` of studies/fashion_dense.toml, expressed in
each tool's own API), the same data (hpo's loader: Debian's Fashion-MNIST files), and one budget
of training epochs for every tool:

* ``hpo``: the study file as it ships (TPE, successive halving inside the epoch cap,
  confirmation over 3 seeds, warm start), run in the run's process through :func:`hpo.optimize`;
* ``keras_tuner_hyperband``: KerasTuner's ``Hyperband`` (objective ``val_accuracy``,
  ``max_epochs`` = the question's, ``factor = 3``);
* ``keras_tuner_bayes``: KerasTuner's ``BayesianOptimization``, fixed epochs (not run unless
  asked for with ``--tools``);
* ``hpo_no_warm_start``: hpo without the study file's enqueued configurations, which the peers
  do not get (not run unless asked for with ``--tools``);
* ``optuna_integration``: Optuna as its Keras example does it: ``TPESampler`` +
  ``MedianPruner``, ``optuna_integration.TFKerasPruningCallback`` on ``val_accuracy``,
  direction maximize, fixed epochs;
* ``random``: random search, no pruning, fixed epochs.

None of the peers minimises epochs-to-target, so each runs the way its users run it and is
judged on hpo's question afterwards, from the per-epoch ``val_accuracy`` its trials logged.

What is measured per tool and seed:

* answer quality: the configuration the tool would hand its user (hpo: its confirmed answer,
  else its best trial; the others: the trial with the fewest epochs to the target in its
  histories, ties to the higher val_accuracy at that epoch, else the highest val_accuracy),
  re-trained by one plain Keras function for every tool with the same fresh seeds; its median
  epochs-to-target (not reached = max_epochs + 1) and range;
* cost: training epochs and CPU-seconds the tool spent (the run's own process: all threads and
  children), and the epochs it had spent when it first held its final answer;
* with ``--checkpoints``, the answer each tool held after a fraction of the budget, re-trained
  the same way (the figure's lines);
* with ``--as-good`` (and ``--first-held``), the epochs from which every answer a tool held was
  as good as hpo's final answer on that seed (and when it first held one that good): the answers
  it held are re-trained the same way, from its last back (and from its first on).

Every tool is stopped once its epochs reach the budget: the peers in the middle of a trial (a
Keras callback stops ``fit`` and the search loop), hpo after the trial (and the confirmation
repeats) running then, so hpo may overshoot by up to ``confirm_seeds x max_epochs``; the epochs
actually spent are what is reported.

Each finished run (question, tool, seed, budget) is appended to ``--out`` as one JSON line and
skipped when the command runs again, so a long benchmark spans several sittings. Each run has a
process of its own (what one run leaves behind never slows the next). Ctrl-C or
``kill`` (SIGTERM) stops it with exit 130, and the run it was in starts over next time.

    python scripts/bench_search.py --quick                                   # < 10 min, 1 seed
    python scripts/bench_search.py --question quickstart                     # 5 seeds, resumable
    python scripts/bench_search.py --question main                           # 3 seeds, hours
    python scripts/bench_search.py --summary --figure docs/bench_search.png  # table and figure
    python scripts/bench_search.py --question quickstart --summary --as-good --first-held
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import gc
import io
import itertools
import json
import math
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STUDY_FILE = REPO / "studies" / "fashion_dense.toml"
DEFAULT_OUT = REPO / "docs" / "bench" / "search_peers.jsonl"
TOOLS = ("hpo", "keras_tuner_hyperband", "optuna_integration", "random", "keras_tuner_bayes", "hpo_no_warm_start")
DEFAULT_TOOLS = TOOLS[:4]
PEERS = ("keras_tuner_hyperband", "optuna_integration", "random", "keras_tuner_bayes")  # what users pick instead
MONITOR = "val_accuracy"
FRESH_SEED_BASE = 10_000  # fresh seeds of the re-training: 10000, 10001, ... (never a search seed)


@dataclasses.dataclass(frozen=True)
class Question:
    """One question (data size, target, epochs per trial) and how the benchmark asks it."""

    train_size: int  # 0: all 54,000 training images left after the validation split
    target: float
    max_epochs: int
    budget: int  # training epochs each tool may spend per seed
    seeds: tuple[int, ...]
    fresh_seeds: int  # re-training runs of each answer
    checkpoints: tuple[float, ...]  # fractions of the budget whose held answers are re-trained too


QUESTIONS = {
    # TPE's first 10 trials are random (Optuna's default start-up): a fixed-epoch tool spends
    # 10 x max_epochs on them, so the budgets are 25 and 20 full trials.
    "quickstart": Question(12_000, 0.85, 10, 250, (0, 1, 2, 3, 4), 5, (0.25, 0.5, 0.75, 1.0)),
    "main": Question(0, 0.88, 15, 300, (0, 1, 2), 5, (0.5, 1.0)),  # re-training on full data is dear
    "quick": Question(3_000, 0.80, 5, 40, (0,), 3, (1.0,)),
}


# --- the space, in each tool's API ---------------------------------------------------------


def space_specs(question: Question, seed: int) -> tuple[Any, Mapping[str, Any]]:
    """``(cfg, specs)``: hpo's config of the question and the dense space's specs."""
    cfg = hpo_config(question, seed)
    return cfg, cfg.space["dense"]


def sample_dense(specs: Mapping[str, Any], ask: Callable[[str, Any], Any]) -> dict[str, Any]:
    """One configuration, asking ``ask(name, spec)`` for each parameter in hpo's order and names
    (``layers``, ``units_l0``, ...; see hpo.space)."""
    values = {"layers": int(ask("layers", specs["layers"]))}
    for i in range(values["layers"]):
        values[f"units_l{i}"] = int(ask(f"units_l{i}", specs["units"]))
    for key in ("activation", "initializer", "dropout", "batchnorm", "learning_rate", "optimizer", "batch_size"):
        values[key] = ask(key, specs[key])
    return canonical(values)


def canonical(values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that define the model, as plain JSON values (inactive ``units_l*`` and a
    tool's own keys such as KerasTuner's ``tuner/epochs`` dropped)."""
    layers = int(values["layers"])
    out: dict[str, Any] = {"layers": layers}
    out.update({f"units_l{i}": int(values[f"units_l{i}"]) for i in range(layers)})
    out.update(
        activation=str(values["activation"]),
        initializer=str(values["initializer"]),
        dropout=float(values["dropout"]),
        batchnorm=bool(values["batchnorm"]),
        learning_rate=float(values["learning_rate"]),
        optimizer=str(values["optimizer"]),
        batch_size=int(values["batch_size"]),
    )
    return out


def optuna_ask(trial: Any) -> Callable[[str, Any], Any]:
    from hpo.config import Choice, Fixed

    def ask(name: str, spec: Any) -> Any:
        if isinstance(spec, Fixed):
            return spec.value
        if isinstance(spec, Choice):
            return trial.suggest_categorical(name, list(spec.values))
        if spec.is_int:
            return trial.suggest_int(name, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
        return trial.suggest_float(name, float(spec.low), float(spec.high), step=spec.step, log=spec.log)

    return ask


def keras_tuner_ask(hp: Any) -> Callable[[str, Any], Any]:
    from hpo.config import Choice, Fixed

    def ask(name: str, spec: Any) -> Any:
        if isinstance(spec, Fixed):
            return spec.value
        if isinstance(spec, Choice):
            if set(spec.values) == {False, True}:
                return hp.Boolean(name)
            return hp.Choice(name, list(spec.values))
        sampling = "log" if spec.log else "linear"
        if spec.is_int:
            return hp.Int(name, int(spec.low), int(spec.high), step=None if spec.log else int(spec.step or 1), sampling=sampling)
        return hp.Float(name, float(spec.low), float(spec.high), step=spec.step, sampling=sampling)

    return ask


def dense_params(values: Mapping[str, Any]) -> Any:
    """hpo's :class:`~hpo.space.Params` of a dense configuration."""
    from hpo.space import Params

    v = canonical(values)
    arch = {
        "units": tuple(v[f"units_l{i}"] for i in range(v["layers"])),
        "activation": v["activation"],
        "initializer": v["initializer"],
        "dropout": v["dropout"],
        "batchnorm": v["batchnorm"],
    }
    return Params("dense", arch, v["learning_rate"], v["optimizer"], v["batch_size"])


def build_model(values: Mapping[str, Any], input_shape: tuple[int, ...], n_classes: int) -> Any:
    """The dense net of ``values``, compiled as a plain Keras user does (no XLA, one step per
    execution: Keras' defaults on a CPU)."""
    from hpo.models.dense import build_dense

    return compile_plain(build_dense(dense_params(values), tuple(input_shape), n_classes), canonical(values))


def compile_plain(model: Any, values: Mapping[str, Any], **options: Any) -> Any:
    import keras

    optimizer = keras.optimizers.get({"class_name": values["optimizer"], "config": {"learning_rate": values["learning_rate"]}})
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"], **options)
    return model


def training_data(split: Any, batch_size: int, seed: int | None = None) -> Any:
    """The training images as every tool here trains on them: a ``tf.data`` pipeline over tensors
    made once, reshuffled at every epoch.

    Not ``fit(x_train, y_train, shuffle=True)``: once ``keras.utils.set_random_seed`` was called
    (as a reproducible run does), Keras 3's array adapter on TensorFlow draws the same
    permutation at every epoch of a ``fit``, which slows learning (docs/PERFORMANCE.md, 4b).
    """
    import tensorflow as tf

    global _TENSORS
    if _TENSORS is None or _TENSORS[0] is not split:
        _TENSORS = (split, tf.constant(split.x_train), tf.constant(split.y_train))
    _, xs, ys = _TENSORS
    n = int(xs.shape[0])
    return (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(int(batch_size))
        .map(lambda i: (tf.gather(xs, i), tf.gather(ys, i)), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


_TENSORS: tuple[Any, Any, Any] | None = None


# --- counting epochs -----------------------------------------------------------------------


class BudgetSpent(Exception):
    """Raised between trials once a peer's epochs reached the budget."""


class Ledger:
    """Every epoch a peer trained, in order: ``(trial key, absolute epoch, val_accuracy)``."""

    def __init__(self, budget: int):
        self.budget = budget
        self.epochs: list[tuple[str, int, float]] = []
        self.values: dict[str, dict[str, Any]] = {}
        self.current: str | None = None

    def begin(self, key: Any, values: Mapping[str, Any]) -> None:
        self.current = str(key)
        self.values[self.current] = canonical(values)

    @property
    def spent(self) -> int:
        return len(self.epochs)

    @property
    def done(self) -> bool:
        return self.spent >= self.budget

    def callback(self) -> Any:
        """A Keras callback that logs each epoch and stops ``fit`` at the budget."""
        import keras

        ledger = self

        class Counting(keras.callbacks.Callback):
            def __deepcopy__(self, memo: Any) -> Any:  # KerasTuner deep-copies callbacks per trial
                return self

            def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
                value = (logs or {}).get(MONITOR)
                value = float(value) if value is not None and math.isfinite(float(value)) else 0.0
                ledger.epochs.append((ledger.current or "?", int(epoch), value))
                if ledger.done:
                    self.model.stop_training = True

        return Counting()

    def trials(self, upto: int | None = None) -> list[dict[str, Any]]:
        """Per trial (first-epoch order): params, epochs trained, epochs to the target, and the
        val_accuracy logged at each absolute epoch; from the first ``upto`` epochs."""
        out: dict[str, dict[str, Any]] = {}
        for key, epoch, value in self.epochs[:upto]:
            t = out.setdefault(key, {"trial": key, "params": self.values.get(key), "epochs": 0, "curve": {}})
            t["epochs"] += 1
            t["curve"][epoch] = round(value, 6)
        return list(out.values())


def peer_answer(ledger: Ledger, target: float, upto: int | None = None) -> tuple[dict[str, Any] | None, int | None]:
    """``(params, epochs to target)`` of what a peer hands its user after ``upto`` epochs: the
    trial with the fewest epochs to the target (ties: the higher val_accuracy at that epoch), else
    the one with the highest val_accuracy (epochs None)."""
    best_key, best_reached = None, None
    for t in ledger.trials(upto):
        curve = t["curve"]
        hits = [e for e in sorted(curve) if curve[e] >= target]
        if hits:
            key = (0, hits[0] + 1, -curve[hits[0]])
            reached = hits[0] + 1
        else:
            key = (1, 0, -max(curve.values()))
            reached = None
        if best_key is None or key < best_key:
            best_key, best_reached, best = key, reached, t
    if best_key is None:
        return None, None
    return best["params"], best_reached


def first_held(answer_at: Callable[[int], Any], final: Any, spent: int) -> int | None:
    """The fewest epochs after which ``answer_at(epochs)`` was ``final``."""
    if final is None:
        return None
    for n in range(1, spent + 1):
        if answer_at(n) == final:
            return n
    return spent


# --- the tools -----------------------------------------------------------------------------


def hpo_config(question: Question, seed: int) -> Any:
    import hpo

    return hpo.load_config(
        STUDY_FILE,
        [
            f"data.train_size={question.train_size}",
            f"objective.target={question.target}",
            f"objective.max_epochs={question.max_epochs}",
            f"study.seed={seed}",
            "study.recycle_after=0",  # trials in this process: its CPU time is measurable
        ],
    )


def hpo_answer_at(
    trials: list[Any], cumulative: list[float], confirm_seeds: int, epochs: float, confirmed: bool = False
) -> dict[str, Any] | None:
    """What hpo hands over after ``epochs`` (``cumulative``: epochs spent at each trial's end): its
    confirmed answer, else (unless ``confirmed``) its best single trial."""
    from hpo.answer import compute_answer

    done = [t for t, c in zip(trials, cumulative, strict=True) if c <= epochs + 1e-9]
    answer = compute_answer(done, confirm_seeds)
    if answer is not None:
        return canonical(answer["params"])
    scored = [t for t in done if t.value is not None]
    if confirmed or not scored:
        return None
    best = min(scored, key=lambda t: (t.value, t.number))
    return canonical({**best.params, **best.user_attrs.get("fixed_params", {})})


def answers_held(cumulative: list[float], answer_at: Callable[[float], Any]) -> list[list[Any]]:
    """``[epochs spent, answer]`` at each trial's end where the answer held changed."""
    held: list[list[Any]] = []
    for c in cumulative:
        now = answer_at(c)
        if now is not None and (not held or held[-1][1] != now):
            held.append([c, now])
    return held


def hpo_trials(run: Mapping[str, Any]) -> list[Any]:
    """An hpo run's recorded trials as frozen trials, for :mod:`hpo.answer` (records without a
    trial's value or parameter count get them from its epochs and :func:`hpo.models.count_params`)."""
    import optuna
    from optuna.trial import TrialState

    from hpo.models import count_params

    out = []
    for t in run["trials"]:
        value = t.get("value", t["epochs_to_target"] if t["epochs_to_target"] is not None else None)
        if value is None and t["state"] == "COMPLETE":
            value = run["max_epochs"] + 1  # not reached: behind every trial that did
        n_params = t.get("n_params") or count_params(dense_params(t["params"]), (28, 28, 1), 10)
        attrs = {k: t[k] for k in ("repeat_of", "stop_reason", "epochs", "epochs_to_target")}
        frozen = optuna.trial.create_trial(
            state=TrialState[t["state"]],
            value=value if t["state"] == "COMPLETE" else None,
            user_attrs={**attrs, "n_params": n_params, "fixed_params": t["params"]},
        )
        frozen.number = t["number"]
        if t["state"] == "PRUNED":
            frozen.value = value
        out.append(frozen)
    return out


def run_hpo(question: Question, seed: int, split: Any, log: Callable[[str], None], warm_start: bool = True) -> dict[str, Any]:
    import hpo
    from hpo.answer import compute_answer

    cfg = hpo_config(question, seed)
    if not warm_start:  # the peers get no configurations to start from: hpo without its own
        cfg = cfg.with_overrides("study.enqueue=[]")
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'hpo.db'}"
        name = f"bench_search_s{seed}"
        spent, study, logged = 0.0, None, set()
        while spent < question.budget:
            with contextlib.redirect_stdout(io.StringIO()):  # each call's banner and summary
                study = hpo.optimize(cfg, storage=url, study_name=name, n_trials=1, artifacts=False, progress=False)
            trials = [t for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number) if t.state.is_finished()]
            spent = sum(float(t.user_attrs.get("epochs") or 0) for t in trials)
            for t in [t for t in trials if t.number not in logged]:
                logged.add(t.number)
                ett = t.user_attrs.get("epochs_to_target")
                log(
                    f"hpo trial {t.number}{' (repeat)' if t.user_attrs.get('repeat_of') is not None else ''}: "
                    f"{t.user_attrs.get('stop_reason')}, {t.user_attrs.get('epochs')} epochs"
                    f"{f', target at {ett:g}' if ett is not None else ''}; spent {spent:g}/{question.budget}"
                )
        trials = [t for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number) if t.state.is_finished()]
    cumulative = list(itertools.accumulate(float(t.user_attrs.get("epochs") or 0) for t in trials))
    total = cumulative[-1] if cumulative else 0.0

    def answer_at(epochs: float, confirmed: bool = False) -> dict[str, Any] | None:
        return hpo_answer_at(trials, cumulative, cfg.study.confirm_seeds, epochs, confirmed)

    final = answer_at(total)
    confirmed = compute_answer(trials, cfg.study.confirm_seeds) is not None
    # a confirmed answer is held once its runs are done, not when its first run was the best trial
    held = next((c for c in cumulative if answer_at(c, confirmed) == final), None) if final is not None else None
    return {
        "epochs": round(total, 3),
        "epochs_to_answer": held,
        "answer": final,
        "answer_kind": "confirmed" if confirmed else "best_trial",
        "answer_at": answer_at,
        "held": answers_held(cumulative, answer_at),
        "n_trials": len(trials),
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "repeat_of": t.user_attrs.get("repeat_of"),
                "stop_reason": t.user_attrs.get("stop_reason"),
                "epochs": t.user_attrs.get("epochs"),
                "epochs_to_target": t.user_attrs.get("epochs_to_target"),
                "value": t.value,
                "n_params": t.user_attrs.get("n_params"),
                "params": {**t.params, **t.user_attrs.get("fixed_params", {})},
            }
            for t in trials
        ],
    }


def run_optuna(
    question: Question, seed: int, split: Any, log: Callable[[str], None], *, pruning: bool
) -> tuple[Ledger, dict[str, Any]]:
    """Optuna's Keras example (``pruning``: TPE + median pruner + TFKerasPruningCallback) or
    random search without pruning; fixed epochs, direction maximize."""
    import keras
    import optuna

    _, specs = space_specs(question, seed)
    ledger = Ledger(question.budget)
    if pruning:
        from optuna_integration import TFKerasPruningCallback

        sampler, pruner = optuna.samplers.TPESampler(seed=seed), optuna.pruners.MedianPruner()
    else:
        sampler, pruner = optuna.samplers.RandomSampler(seed=seed), optuna.pruners.NopPruner()

    def objective(trial: optuna.Trial) -> float:
        keras.backend.clear_session()
        gc.collect()
        values = sample_dense(specs, optuna_ask(trial))
        ledger.begin(trial.number, values)
        model = build_model(values, split.image_shape, split.n_classes)
        callbacks = [ledger.callback()]
        if pruning:
            callbacks.append(TFKerasPruningCallback(trial, MONITOR))
        history = model.fit(
            training_data(split, values["batch_size"]),
            epochs=question.max_epochs,
            shuffle=False,  # the pipeline reshuffles
            validation_data=(split.x_val, split.y_val),
            callbacks=callbacks,
            verbose=0,
        )
        return float(history.history[MONITOR][-1])

    def stop_at_budget(study: optuna.Study, trial: Any) -> None:
        log(f"trial {trial.number}: {trial.state.name.lower()}; spent {ledger.spent}/{ledger.budget}")
        if ledger.done:
            study.stop()

    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    study.optimize(objective, n_trials=100_000, callbacks=[stop_at_budget], gc_after_trial=True)
    return ledger, {"n_trials": len(study.trials)}


def run_keras_tuner(
    question: Question, seed: int, split: Any, log: Callable[[str], None], *, kind: str
) -> tuple[Ledger, dict[str, Any]]:
    """KerasTuner's Hyperband (``max_epochs``, ``factor = 3``) or BayesianOptimization (fixed
    epochs), objective ``val_accuracy``, stopped between trials at the budget."""
    import keras_tuner as kt

    _, specs = space_specs(question, seed)
    ledger = Ledger(question.budget)

    class DenseHyperModel(kt.HyperModel):
        def build(self, hp: Any) -> Any:
            values = sample_dense(specs, keras_tuner_ask(hp))
            return build_model(values, split.image_shape, split.n_classes)

        def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            ledger.values[ledger.current or "?"] = canonical(hp.values)
            return model.fit(
                training_data(split, int(hp.get("batch_size"))), **{**kwargs, "shuffle": False}
            )  # in place of search()'s (x, y)

    base = kt.Hyperband if kind == "hyperband" else kt.BayesianOptimization

    class Tuner(base):  # type: ignore[misc, valid-type]
        def pre_create_trial(self) -> None:
            if ledger.done:
                raise BudgetSpent

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            ledger.current = str(trial.trial_id)
            return super().run_trial(trial, *args, **kwargs)

        def on_trial_end(self, trial: Any) -> None:
            super().on_trial_end(trial)
            log(f"trial {trial.trial_id}: {trial.status}; spent {ledger.spent}/{ledger.budget}")

    options: dict[str, Any] = {"max_epochs": question.max_epochs, "factor": 3, "hyperband_iterations": 10_000}
    if kind != "hyperband":
        options = {"max_trials": 100_000}
    with tempfile.TemporaryDirectory(prefix="bench-search-kt-") as tmp:
        tuner = Tuner(
            DenseHyperModel(),
            objective=kt.Objective(MONITOR, "max"),
            seed=seed,
            directory=tmp,
            project_name=f"{kind}_s{seed}",
            overwrite=True,
            **options,
        )
        fit: dict[str, Any] = {} if kind == "hyperband" else {"epochs": question.max_epochs}
        try:
            tuner.search(
                split.x_train,
                split.y_train,
                validation_data=(split.x_val, split.y_val),
                callbacks=[ledger.callback()],
                verbose=0,
                **fit,
            )
        except BudgetSpent:
            pass
        n_trials = len(tuner.oracle.trials)
    return ledger, {"n_trials": n_trials}


def run_peer(tool: str, question: Question, seed: int, split: Any, log: Callable[[str], None]) -> dict[str, Any]:
    if tool == "optuna_integration":
        ledger, extra = run_optuna(question, seed, split, log, pruning=True)
    elif tool == "random":
        ledger, extra = run_optuna(question, seed, split, log, pruning=False)
    elif tool == "keras_tuner_hyperband":
        ledger, extra = run_keras_tuner(question, seed, split, log, kind="hyperband")
    else:
        ledger, extra = run_keras_tuner(question, seed, split, log, kind="bayes")

    def answer_at(epochs: float) -> dict[str, Any] | None:
        return peer_answer(ledger, question.target, int(epochs))[0]

    final = answer_at(ledger.spent)
    trials = ledger.trials()
    for t in trials:  # a Hyperband trial that goes on from its parent's weights starts after epoch 0
        t["first_epoch"] = min(t["curve"])
        t["curve"] = [t["curve"][e] for e in sorted(t["curve"])]
    return {
        "epochs": ledger.spent,
        "epochs_to_answer": first_held(answer_at, final, ledger.spent),
        "answer": final,
        "answer_kind": "fewest_epochs" if peer_answer(ledger, question.target)[1] is not None else "best_accuracy",
        "answer_at": answer_at,
        **extra,
        "trials": trials,
    }


# --- the same plain re-training for every tool's answer -------------------------------------


class Retrainer:
    """Epochs to the target of a configuration on one fresh seed (max_epochs + 1: not reached);
    cached, so a configuration two tools found is trained once per seed."""

    def __init__(self, question: Question, split: Any):
        self.question = question
        self.split = split
        self.cache: dict[tuple[str, int], int] = {}

    def __call__(self, values: Mapping[str, Any], seed: int) -> int:
        key = (json.dumps(canonical(values), sort_keys=True), seed)
        if key not in self.cache:
            self.cache[key] = self._train(values, seed)
        return self.cache[key]

    def _train(self, values: Mapping[str, Any], seed: int) -> int:
        import keras

        q, s = self.question, self.split
        keras.backend.clear_session()
        gc.collect()
        keras.utils.set_random_seed(seed)
        model = build_model(values, s.image_shape, s.n_classes)
        # Same numbers as a plain fit; 32 steps per execution only saves Python overhead.
        compile_plain(model, canonical(values), steps_per_execution=32)
        reached: list[int] = []

        class AtTarget(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
                if (logs or {}).get(MONITOR, 0.0) >= q.target:
                    reached.append(epoch + 1)
                    self.model.stop_training = True

        model.fit(
            training_data(s, int(values["batch_size"]), seed),
            epochs=q.max_epochs,
            shuffle=False,
            validation_data=(s.x_val, s.y_val),
            validation_batch_size=1024,  # same metric, fewer steps
            callbacks=[AtTarget()],
            verbose=0,
        )
        return reached[0] if reached else q.max_epochs + 1

    def judge(self, values: Mapping[str, Any] | None, seeds: list[int]) -> dict[str, Any]:
        if values is None:
            runs = [self.question.max_epochs + 1] * len(seeds)
        else:
            runs = [self(values, seed) for seed in seeds]
        return {"runs": runs, "median": statistics.median(runs), "min": min(runs), "max": max(runs)}


# --- one run, the summary, the figure ------------------------------------------------------


def run_one(qname: str, question: Question, tool: str, seed: int, split: Any, retrain: Retrainer) -> dict[str, Any]:
    import keras

    started = time.strftime("%H:%M:%S")

    def log(line: str) -> None:
        print(f"  [{qname} {tool} seed {seed}] {line}", flush=True)

    log(f"start {started}")
    keras.utils.set_random_seed(seed)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if tool in ("hpo", "hpo_no_warm_start"):
        result = run_hpo(question, seed, split, log, warm_start=tool == "hpo")
    else:
        result = run_peer(tool, question, seed, split, log)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0 + (children.ru_utime - children0.ru_utime) + (children.ru_stime - children0.ru_stime)
    wall = time.perf_counter() - wall0
    answer_at = result.pop("answer_at")
    fresh = [FRESH_SEED_BASE + i for i in range(question.fresh_seeds)]
    judging = time.perf_counter()
    judged = retrain.judge(result["answer"], fresh)
    checkpoints = []
    for frac in question.checkpoints:
        at = result["epochs"] if frac >= 1 else round(frac * question.budget)
        values = result["answer"] if frac >= 1 else answer_at(at)
        checkpoints.append({"epochs": at, "answer": values, **retrain.judge(values, fresh)})
    record = {
        "question": qname,
        "tool": tool,
        "seed": seed,
        "budget": question.budget,
        "train_size": question.train_size,
        "target": question.target,
        "max_epochs": question.max_epochs,
        "fresh_seeds": fresh,
        "answer_median": judged["median"],
        "answer_runs": judged["runs"],
        "answer_range": [judged["min"], judged["max"]],
        "epochs": result.pop("epochs"),
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "retrain_wall_s": round(time.perf_counter() - judging, 1),
        "epochs_to_answer": result.pop("epochs_to_answer"),
        "checkpoints": checkpoints,
        "versions": versions(),
        **result,
    }
    log(
        f"answer {record['answer_kind']}: fresh-seed epochs {judged['runs']} (median {judged['median']:g}); "
        f"{record['epochs']:g} epochs, {record['cpu_s']:.0f} CPU-s, {wall:.0f} s wall; "
        f"answer held after {record['epochs_to_answer']} epochs"
    )
    return record


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("tensorflow", "keras", "optuna", "keras-tuner", "optuna-integration"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    return out


def _med(values: list[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


def _fmt(values: list[float | None]) -> str:
    vs = [v for v in values if v is not None]
    if not vs:
        return "-"
    m = statistics.median(vs)
    missing = f", {len(values) - len(vs)} none" if len(vs) < len(values) else ""
    return f"{m:g}" if len(values) == 1 else f"{m:g} ({min(vs):g}–{max(vs):g}{missing})"


def _epochs_list(values: list[float | None]) -> str:
    return ", ".join("-" if e is None else "never" if e == NEVER else f"{e:g}" for e in values)


def _ratio(
    measure: Callable[..., float | None], hpo_run: Mapping[str, Any], peer_runs: list[dict[str, Any]], judged: Any
) -> tuple[dict[str, Any], str]:
    """hpo's epochs over the cheapest peer's, both by ``measure`` (:func:`as_good_as` or
    :func:`kept_as_good`); a peer never as good spent more than its epochs: then a bound."""
    own = measure(hpo_run, hpo_run, judged)
    reached = [(c, r) for r in peer_runs if (c := measure(r, hpo_run, judged)) not in (None, NEVER)]
    if reached:
        c, r = min(reached, key=lambda cr: cr[0])
        return {"hpo": own, "peer": c, "peer_tool": r["tool"], "ratio": own / c if c else None}, (
            f"{own:g} / {c:g} ({r['tool']})" + (f" = {own / c:.2f}" if c else "")
        )
    spent = min(r["epochs"] for r in peer_runs)
    return {"hpo": own, "peer": None, "peer_tool": None, "ratio_below": own / spent}, (
        f"{own:g} / more than {spent:g} (no peer as good) < {own / spent:.2f}"
    )


def _matched(hpo_run: Mapping[str, Any], peer_run: Mapping[str, Any], judged: Any) -> dict[str, Any]:
    """The other way round: the epochs from which every answer hpo held was as good as the peer's
    final answer (:func:`kept_as_good` with the peer's answer as the bar), against the epochs the
    peer had spent when it first held that answer."""
    own = kept_as_good(hpo_run, peer_run, judged)
    spent = peer_run["epochs_to_answer"]
    good = own not in (None, NEVER) and spent
    return {"hpo": own, "peer": spent, "ratio": own / spent if good else None}


def summarise(runs: list[dict[str, Any]], judged: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Per question and tool: medians over seeds (ranges) of the answer's fresh-seed median,
    epochs, CPU-seconds and epochs to the final answer, and per seed the epochs to an answer as
    good as hpo's (first held; held from then on); then per seed the ratios hpo / best peer, and
    the other way round the epochs hpo took to hold an answer as good as each peer's final one.
    Printed as tables, returned as data."""
    out: dict[str, Any] = {}
    for qname in dict.fromkeys(r["question"] for r in runs):
        qruns = [r for r in runs if r["question"] == qname]
        q0 = qruns[0]
        budgets = {r["tool"] in PEERS: r["budget"] for r in qruns}  # --peer-budget: the peers' differs
        own_budget = budgets.get(False, q0["budget"])  # hpo's, whichever run was stored first
        budget = f"{own_budget} epochs" if len(set(budgets.values())) == 1 else f"{own_budget} epochs, the peers {budgets[True]}"
        print(
            f"\n{qname}: target {q0['target']} {MONITOR}, train_size {q0['train_size'] or 'all'}, "
            f"max_epochs {q0['max_epochs']}, budget {budget}; median over seeds (range)"
        )
        print(
            f"{'tool':<24} {'seeds':>5}  {'answer (fresh seeds)':<22} {'epochs':<20} {'CPU-s':<22} "
            f"{'epochs to answer':<20} epochs to an answer as good as hpo's per seed: first held | held from then on"
        )
        hpo_runs = {r["seed"]: r for r in qruns if r["tool"] == "hpo"}
        tools: dict[str, Any] = {}
        for tool in [t for t in TOOLS if any(r["tool"] == t for r in qruns)]:
            rs = sorted((r for r in qruns if r["tool"] == tool), key=lambda r: r["seed"])  # per-seed lists in seed order
            cols = {k: [r[k] for r in rs] for k in ("answer_median", "epochs", "cpu_s", "epochs_to_answer")}
            first = [as_good_as(r, hpo_runs.get(r["seed"]), judged) for r in rs]
            kept = [kept_as_good(r, hpo_runs.get(r["seed"]), judged) for r in rs]
            print(
                f"{tool:<24} {len(rs):>5}  {_fmt(cols['answer_median']):<22} {_fmt(cols['epochs']):<20} "
                f"{_fmt(cols['cpu_s']):<22} {_fmt(cols['epochs_to_answer']):<20} {_epochs_list(first)} | {_epochs_list(kept)}"
            )
            tools[tool] = {
                "answer_median": _med(cols["answer_median"]),
                "epochs": _med(cols["epochs"]),
                "cpu_s": _med(cols["cpu_s"]),
                "epochs_to_answer": _med(cols["epochs_to_answer"]),
                "epochs_to_as_good_as_hpo": first,
                "epochs_from_which_as_good_as_hpo": kept,
                "seeds": [r["seed"] for r in rs],
                "answer_medians": cols["answer_median"],
            }
        ratios = []
        for seed, h in sorted(hpo_runs.items()):
            peer_runs = [r for r in qruns if r["tool"] in PEERS and r["seed"] == seed]
            if not peer_runs:
                continue
            best = min(peer_runs, key=lambda r: r["answer_median"])
            first, first_text = _ratio(as_good_as, h, peer_runs, judged)
            kept, kept_text = _ratio(kept_as_good, h, peer_runs, judged)
            matched = {p["tool"]: _matched(h, p, judged) for p in peer_runs}
            ratios.append(
                {
                    "seed": seed,
                    "answer": h["answer_median"] / best["answer_median"],
                    "best_answer_peer": best["tool"],
                    "first_held": first,
                    "kept": kept,
                    "as_good_as_peer": matched,
                }
            )
            print(
                f"seed {seed}: answer, hpo / best peer {h['answer_median']:g} / {best['answer_median']:g} ({best['tool']}) = "
                f"{h['answer_median'] / best['answer_median']:.2f}; epochs to an answer as good, hpo / cheapest peer: "
                f"first held {first_text}; held from then on {kept_text}"
            )
            print(
                "  the other way round, epochs to an answer as good as the peer's final one, hpo held from then on / "
                "the peer first held it: "
                + "; ".join(
                    f"{tool} {_epochs_list([m['hpo']])} / {m['peer']:g}"
                    + (f" = {m['ratio']:.2f}" if m["ratio"] is not None else "")
                    for tool, m in matched.items()
                )
            )
        out[qname] = {"budget_epochs": own_budget, "tools": tools, "ratios": ratios}
    return out


NEVER = -1  # no answer as good within the budget


def held_answers(run: dict[str, Any]) -> list[tuple[float, dict[str, Any]]] | None:
    """Every answer a run's tool held, in order, with the epochs it had spent when it began to
    hold it (None: not recorded).  hpo records them; a peer's are replayed from the
    ``val_accuracy`` its trials logged, by :func:`peer_answer`'s rule, one epoch at a time."""
    if isinstance(run.get("held"), list):
        return [(float(e), a) for e, a in run["held"]]
    if run["tool"].startswith("hpo"):  # recorded before hpo runs kept them: from their trials
        trials = hpo_trials(run)
        cumulative = list(itertools.accumulate(float(t["epochs"] or 0) for t in run["trials"]))
        confirm_seeds = 3  # the study file's

        def answer_at(epochs: float) -> dict[str, Any] | None:
            return hpo_answer_at(trials, cumulative, confirm_seeds, epochs)

        run["held"] = answers_held(cumulative, answer_at)  # rebuilt once per record, not per question asked
        return [(float(e), a) for e, a in run["held"]]
    target, spent, best_key, out = run["target"], 0, None, []
    for t in run["trials"]:  # in the order they trained; one trial's epochs are consecutive
        hit, top = None, -math.inf
        for i, value in enumerate(t["curve"]):
            spent += 1
            if hit is None and value >= target:
                hit = (t["first_epoch"] + i + 1, value)
            top = max(top, value)
            key = (0, hit[0], -hit[1]) if hit else (1, 0, -top)
            if best_key is None or key < best_key:
                best_key = key
                if not out or out[-1][1] != t["params"]:
                    out.append((float(spent), t["params"]))
    return out


def judged_key(question: str, values: Mapping[str, Any], fresh_seeds: list[int]) -> str:
    return json.dumps([question, canonical(values), fresh_seeds], sort_keys=True)


def judged_from_runs(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Fresh-seed medians the runs' records hold already (their answers and checkpoints)."""
    out = {}
    for r in runs:
        for values, median in [(r["answer"], r["answer_median"])] + [(c["answer"], c["median"]) for c in r["checkpoints"]]:
            if values is not None:
                out[judged_key(r["question"], values, r["fresh_seeds"])] = median
    return out


def as_good_as(
    run: Mapping[str, Any], hpo_run: Mapping[str, Any] | None, judged: Mapping[str, float] | None = None
) -> float | None:
    """Epochs ``run``'s tool had spent when it first held an answer whose fresh-seed median is at
    most hpo's final answer's on the same seed (hpo's own run: its final answer's): the first
    answer held that good, where every answer held up to it has been judged (``judged``: fresh-seed
    medians by :func:`judged_key`, see ``--as-good``), else the first checkpoint that good
    (``NEVER``: none within the budget; None: no hpo run of that seed)."""
    if hpo_run is None:
        return None
    bar = hpo_run["answer_median"]
    held = held_answers(run) if judged is not None else None
    if held is not None:
        for epochs, values in held:
            median = judged.get(judged_key(run["question"], values, run["fresh_seeds"]))
            if median is None:
                break  # not judged: fall back on the checkpoints
            if median <= bar:
                return epochs
        else:
            return NEVER
    if run["tool"] == "hpo" and held is None:
        return run["epochs_to_answer"]
    good = [c["epochs"] for c in run["checkpoints"] if c["median"] <= bar]
    return good[0] if good else NEVER


def kept_as_good(
    run: Mapping[str, Any], hpo_run: Mapping[str, Any] | None, judged: Mapping[str, float] | None = None
) -> float | None:
    """Epochs ``run``'s tool had spent from when every answer it held was as good as hpo's final
    answer on the same seed (hpo's own run: as its own final answer): stopped at any point after
    that, it hands over an answer that good.  From the judged answers held (walked back from the
    last), else from the checkpoints (``NEVER``: its last answer is not that good; None: no hpo
    run of that seed)."""
    if hpo_run is None:
        return None
    bar = hpo_run["answer_median"]
    held = held_answers(run) if judged is not None else None
    if held is not None:
        since = NEVER
        for epochs, values in reversed(held):
            median = judged.get(judged_key(run["question"], values, run["fresh_seeds"]))
            if median is None:
                break  # not judged: fall back on the checkpoints
            if median > bar:
                return since
            since = epochs
        else:
            return since
    if run["tool"] == "hpo" and held is None:
        return run["epochs_to_answer"]
    since = NEVER
    for c in reversed(run["checkpoints"]):
        if c["median"] > bar:
            break
        since = c["epochs"]
    return since


def judge_held(
    runs: list[dict[str, Any]],
    judged: dict[str, float],
    retrainers: Callable[[str], Retrainer],
    out: Path | None,
    first: bool = False,
) -> None:
    """Re-train the answers each run held, from its last back, until one is not as good as hpo's
    on its seed (for :func:`kept_as_good`); with ``first``, also from its first on until one is
    (for :func:`as_good_as`).  Adds their fresh-seed medians to ``judged`` (and to ``out``)."""
    hpo_runs = {(r["question"], r["seed"]): r for r in runs if r["tool"] == "hpo"}
    for r in runs:
        hpo_run = hpo_runs.get((r["question"], r["seed"]))
        held = held_answers(r)
        if hpo_run is None or held is None:
            continue
        for order, stop_when_good in [(held[::-1], False)] + ([(held, True)] if first else []):
            for _, values in order:
                key = judged_key(r["question"], values, r["fresh_seeds"])
                if key not in judged:
                    result = retrainers(r["question"]).judge(values, r["fresh_seeds"])
                    judged[key] = result["median"]
                    print(f"  [{r['question']} {r['tool']} seed {r['seed']}] held answer judged: {result['runs']}", flush=True)
                    if out is not None:
                        with out.open("a") as f:
                            f.write(json.dumps({"key": key, **result}) + "\n")
                if (judged[key] <= hpo_run["answer_median"]) == stop_when_good:
                    break


def figure_points(runs: list[dict[str, Any]], qname: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """Per tool: ``(epochs spent, median answer median, min, max)`` over seeds at each checkpoint."""
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    for tool in TOOLS:
        rs = [r for r in runs if r["question"] == qname and r["tool"] == tool]
        if not rs:
            continue
        n = min(len(r["checkpoints"]) for r in rs)
        points = []
        for i in range(n):
            xs = [r["checkpoints"][i]["epochs"] for r in rs]
            ys = [r["checkpoints"][i]["median"] for r in rs]
            points.append((statistics.median(xs), statistics.median(ys), min(ys), max(ys)))
        out[tool] = points
    return out


def draw(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qnames = [q for q in QUESTIONS if any(r["question"] == q for r in runs)]
    fig, axes = plt.subplots(1, len(qnames), figsize=(5.5 * len(qnames), 5), squeeze=False)
    markers = dict(zip(TOOLS, "osD^vP", strict=True))
    for ax, qname in zip(axes[0], qnames, strict=True):
        q = next(r for r in runs if r["question"] == qname)
        seeds = sorted({r["seed"] for r in runs if r["question"] == qname})
        points_by_tool = figure_points(runs, qname)
        for i, (tool, points) in enumerate(points_by_tool.items()):
            xs, ys, lo, hi = zip(*points, strict=True)
            err = [[y - a for y, a in zip(ys, lo, strict=True)], [b - y for y, b in zip(ys, hi, strict=True)]]
            shift = (i - (len(points_by_tool) - 1) / 2) * 0.06  # lines that coincide stay visible
            ax.errorbar(
                xs,
                [y + shift for y in ys],
                yerr=err,
                marker=markers[tool],
                capsize=3,
                label=tool,
                lw=2.2 if tool == "hpo" else 1.2,
            )
        ax.axhline(q["max_epochs"] + 1, color="grey", lw=0.8, ls=":")
        ax.set_ylim(0, q["max_epochs"] + 1.5)
        ax.set_title(
            f"{qname}: {MONITOR} >= {q['target']}, budget {q['budget']} epochs\n"
            f"{'seed' if len(seeds) == 1 else 'median over seeds'} {', '.join(map(str, seeds))}",
            fontsize=10,
        )
        ax.set_xlabel("training epochs spent by the tool")
        ax.set_ylabel(f"answer: median epochs to target, fresh seeds\n({q['max_epochs'] + 1} = not reached)")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def run_here(qname: str, question: Question, tool: str, seed: int) -> dict[str, Any]:
    """One run (tool, seed) in this process: the data, the judge, the search, the re-training."""
    import optuna

    from hpo.data import prepare
    from hpo.quiet import import_tensorflow

    import_tensorflow()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    split = prepare(hpo_config(question, 0).data)
    print(
        f"  [{qname} {tool} seed {seed}] {len(split.x_train)} train / {len(split.x_val)} validation images",
        flush=True,
    )
    return run_one(qname, question, tool, seed, split, Retrainer(question, split))


def run_isolated(qname: str, question: Question, tool: str, seed: int) -> dict[str, Any]:
    """One run in a new process (this script with ``--one``): what a run leaves behind (Keras'
    and TensorFlow's state, a heap grown by earlier searches, which slowed every later trial's
    clean-up) never costs the next run CPU-seconds.  Ctrl-C or SIGTERM here stops the child
    (SIGTERM, which hpo and this script handle as Ctrl-C) and raises KeyboardInterrupt."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="bench-search-run-") as tmp:
        record_file = Path(tmp) / "run.jsonl"
        argv = [
            sys.executable, str(Path(__file__).resolve()), "--one", "--question", qname, "--tools", tool,
            "--seeds", str(seed), "--budget", str(question.budget), "--train-size", str(question.train_size),
            "--fresh-seeds", str(question.fresh_seeds), "--checkpoints", ",".join(map(str, question.checkpoints)),
            "--out", str(record_file),
        ]  # fmt: skip
        proc = subprocess.Popen(argv)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            raise
        if code != 0 or not record_file.exists():
            raise SystemExit(f"bench_search: the run of {tool} on {qname} seed {seed} failed (exit {code}, see above)")
        return json.loads(record_file.read_text().splitlines()[-1])


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM (``kill``) between or inside the peers' trials: stopped as Ctrl-C stops them."""
    raise KeyboardInterrupt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="question 'quick', 1 seed, default tools (< 10 minutes here)")
    p.add_argument("--question", default="quickstart,main", help=f"comma-separated, from {', '.join(QUESTIONS)}")
    p.add_argument("--tools", default=",".join(DEFAULT_TOOLS), help=f"comma-separated, from {', '.join(TOOLS)}")
    p.add_argument("--seeds", default=None, help="comma-separated search seeds (default: the question's)")
    p.add_argument("--budget", type=int, default=None, help="training epochs per tool and seed (default: the question's)")
    p.add_argument(
        "--peer-budget",
        type=int,
        default=None,
        help="training epochs per peer and seed (default: --budget); hpo keeps --budget, e.g. to see what three times hpo's budget buys a peer",
    )
    p.add_argument("--train-size", type=int, default=None, help="training images (default: the question's; for smoke runs)")
    p.add_argument("--fresh-seeds", type=int, default=None, help="re-training runs of each answer")
    p.add_argument("--checkpoints", default=None, help="fractions of the budget whose answers are re-trained, e.g. 0.5,1")
    p.add_argument(
        "--out", type=Path, default=None, help=f"JSON-lines file of finished runs (default {DEFAULT_OUT}; --quick: none)"
    )
    p.add_argument("--summary", action="store_true", help="only summarise --out")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a run in its own process, see run_isolated
    p.add_argument(
        "--as-good",
        action="store_true",
        help="re-train the answers each run held, from the last back, for the exact epochs from which its answer stayed as good as hpo's",
    )
    p.add_argument(
        "--first-held",
        action="store_true",
        help="with --as-good, also from the first on, for the exact epochs to the first answer as good as hpo's",
    )
    p.add_argument("--figure", type=Path, default=None, help="draw epochs spent against answer quality into this PNG")
    a = p.parse_args()
    qnames = ["quick"] if a.quick else [q.strip() for q in a.question.split(",") if q.strip()]
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    for q in qnames:
        if q not in QUESTIONS:
            p.error(f"--question: unknown question {q!r}; choose from {', '.join(QUESTIONS)}")
    for t in tools:
        if t not in TOOLS:
            p.error(f"--tools: unknown tool {t!r}; choose from {', '.join(TOOLS)}")
    out = a.out if a.out is not None or a.quick else DEFAULT_OUT
    questions = {}
    for q in qnames:
        changes: dict[str, Any] = {}
        if a.seeds:
            changes["seeds"] = tuple(int(s) for s in a.seeds.split(","))
        if a.budget is not None:
            changes["budget"] = a.budget
        if a.train_size is not None:
            changes["train_size"] = a.train_size
        if a.fresh_seeds is not None:
            changes["fresh_seeds"] = a.fresh_seeds
        if a.checkpoints:
            changes["checkpoints"] = tuple(float(c) for c in a.checkpoints.split(","))
        questions[q] = dataclasses.replace(QUESTIONS[q], **changes)

    def asked(qname: str, tool: str) -> Question:
        """The question as ``tool`` is asked it: a peer with --peer-budget's budget."""
        if a.peer_budget is not None and tool in PEERS:
            return dataclasses.replace(questions[qname], budget=a.peer_budget)
        return questions[qname]

    done: list[dict[str, Any]] = []
    if out is not None and out.exists():
        done = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    started = time.perf_counter()
    # KerasTuner's Hyperband restores a parent trial's checkpoint before the optimizer is built.
    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
    if not a.summary:
        signal.signal(signal.SIGTERM, _terminated)  # hpo.optimize sets its own while it runs, then puts this back
        for qname, question in questions.items():
            if not a.one:
                print(
                    f"{qname}: {MONITOR} >= {question.target}, max_epochs {question.max_epochs}, budget {question.budget} "
                    f"epochs, seeds {list(question.seeds)}; each run in a process of its own",
                    flush=True,
                )
            for seed in question.seeds:  # every tool per seed: a partial run still compares like with like
                for tool in tools:
                    tool_question = asked(qname, tool)
                    if any(
                        (r["question"], r["tool"], r["seed"], r["budget"], r["train_size"])
                        == (qname, tool, seed, tool_question.budget, tool_question.train_size)
                        for r in done
                    ):
                        continue
                    try:
                        record = (
                            run_here(qname, tool_question, tool, seed)
                            if a.one
                            else run_isolated(qname, tool_question, tool, seed)
                        )
                    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (hpo turns both into this)
                        if a.one:
                            return 130  # the parent says it
                        kept = f"the finished runs are in {out}" if out is not None else "nothing is kept (no --out)"
                        print(
                            f"bench_search: stopped during {qname} {tool} seed {seed}; {kept}, and this run starts "
                            "over when the command runs again",
                            file=sys.stderr,
                            flush=True,
                        )
                        return 130
                    done.append(record)
                    if out is not None:
                        out.parent.mkdir(parents=True, exist_ok=True)
                        with out.open("a") as f:
                            f.write(json.dumps(record) + "\n")
        if a.one:
            return 0
        print(f"wall time {time.perf_counter() - started:.0f} s", flush=True)
    runs = [
        r
        for r in done
        if r["question"] in questions
        and r["tool"] in tools
        and r["seed"] in questions[r["question"]].seeds
        and r["budget"] == asked(r["question"], r["tool"]).budget
        and r["train_size"] == questions[r["question"]].train_size
    ]
    judged: dict[str, float] = judged_from_runs(runs)
    judged_file = out.with_name(out.stem + "_judged.jsonl") if out is not None else None
    if judged_file is not None and judged_file.exists():
        judged.update(
            {(r := json.loads(line))["key"]: r["median"] for line in judged_file.read_text().splitlines() if line.strip()}
        )
    if a.as_good:
        from hpo.data import prepare
        from hpo.quiet import import_tensorflow

        import_tensorflow()
        retrainers: dict[str, Retrainer] = {}

        def retrainer(qname: str) -> Retrainer:
            if qname not in retrainers:
                retrainers[qname] = Retrainer(questions[qname], prepare(hpo_config(questions[qname], 0).data))
            return retrainers[qname]

        judge_held(runs, judged, retrainer, judged_file, first=a.first_held)
    summary = summarise(runs, judged)
    if a.figure is not None and runs:
        draw(runs, a.figure)
    if a.quick:
        q = summary.get("quick", {"budget_epochs": questions["quick"].budget, "tools": {}})
        tools_out = {t: {k: v[k] for k in ("answer_median", "epochs", "cpu_s")} for t, v in copy.deepcopy(q["tools"]).items()}
        print(json.dumps({"budget_epochs": q["budget_epochs"], "tools": tools_out}))
    else:
        print(json.dumps({"questions": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
