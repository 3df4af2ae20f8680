"""Samplers and pruners: the study file's ``study.sampler`` / ``study.pruner`` as Optuna objects.

:class:`EpochCap` is adaptive capping as runtime minimisers do it (ParamILS, SMAC): a trial that
has not reached the target after the answer's epochs (plus a slack) cannot beat the answer, so
it stops, whatever the pruner it wraps would say.  Pruners here judge objectives that report
hpo's cost unit (see :mod:`hpo.callbacks`).

:func:`check_config` is the part of a study file's validation that needs Optuna: it builds the
sampler and pruner once, and checks ``study.enqueue`` against the space's distributions.
"""

from __future__ import annotations

import builtins
import collections.abc
import functools
import inspect
import math
import sys
import types
import typing
import warnings
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.trial import TrialState

from hpo.config import MAX_OPTION, MAX_SEED, Bound, StudyConfig, derive_seed, shown
from hpo.errors import ConfigError

__all__ = ["EpochCap", "RESUME_SEED_STRIDE", "check_config", "make_pruner", "make_sampler", "sampler_seed"]

# A resumed study's sampler is seeded ``study.seed + held * RESUME_SEED_STRIDE`` (mod 2**32).  The
# stride is odd, so no two study sizes share a seed; and for studies under a million trials,
# ``(held' - held) * RESUME_SEED_STRIDE`` stays at least 2,955 away from 0 (mod 2**32), so workers
# seeded ``seed + i`` (at most MAX_WORKERS = 256 of them) never share a seed either.
RESUME_SEED_STRIDE = 1_000_003
# Numbers in sampler and pruner options; an option not listed takes [0, MAX_OPTION].
OPTION_BOUNDS = {"n_ei_candidates": Bound(1, 10_000)}  # TPE draws this many candidates per parameter

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


# --------------------------------------------------------------------------------------------
# Samplers and pruners


def check_config(cfg: StudyConfig) -> StudyConfig:
    """Build the sampler and pruner once, so that bad options fail before a study exists, and
    check each ``study.enqueue`` table against the space; returns ``cfg``."""
    from hpo.space import enqueue_errors

    for key, build in (("study.sampler_options", make_sampler), ("study.pruner_options", make_pruner)):
        try:
            build(cfg)
        except ConfigError as e:
            raise cfg.error(e.key or key, e.message) from None
        except (TypeError, ValueError) as e:
            raise cfg.error(key, str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    for i, params in enumerate(cfg.study.enqueue):
        problem = enqueue_errors(cfg, params)
        if problem is not None:
            key, message = problem
            raise cfg.error(f"study.enqueue[{i}].{key}" if key else f"study.enqueue[{i}]", message)
    return cfg


class _NotFromFile:
    """Stands for a type no study-file value has (a callable, an array, a trial)."""

    def __class_getitem__(cls, item: Any) -> type:
        return cls


class _Names(dict):
    """Names in an Optuna module's annotations, including those it imports only for type checkers."""

    def __init__(self, module: types.ModuleType):
        super().__init__(Callable=collections.abc.Callable, Sequence=collections.abc.Sequence, Mapping=collections.abc.Mapping)
        self.module = module

    def __missing__(self, name: str) -> Any:
        if name in vars(self.module):
            return vars(self.module)[name]
        return getattr(builtins, name, _NotFromFile)


@functools.cache
def option_types(cls: type) -> dict[str, Any]:
    """The type hints of ``cls``'s constructor ({} when they cannot be read)."""
    module = sys.modules[cls.__module__]
    try:
        return typing.get_type_hints(cls.__init__, globalns=vars(module), localns=_Names(module))
    except Exception:  # noqa: BLE001 - then only the constructor checks the values
        return {}


def _fits(value: Any, hint: Any) -> bool:
    """True if ``value``, as TOML or JSON gives it, is a value of the type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if (origin or hint) in (list, tuple, collections.abc.Sequence):
        return isinstance(value, list) and (not args or all(_fits(v, args[0]) for v in value))
    if (origin or hint) in (dict, collections.abc.Mapping):
        return isinstance(value, dict) and (len(args) < 2 or all(_fits(v, args[1]) for v in value.values()))
    return False


def _type_text(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(filter(None, (_type_text(a) for a in args if a is not type(None))))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if (origin or hint) in (list, tuple, collections.abc.Sequence):
        return "a list"
    if (origin or hint) in (dict, collections.abc.Mapping):
        return "a table"
    return ""  # nothing a study file can give


def _check_option(cls: type, key: str, name: str, value: Any, hint: Any) -> None:
    """One option's value against the constructor's type hint and the bound of its numbers."""
    where = f"{key}.{name}"
    if hint is not None and not _fits(value, hint):
        wanted = _type_text(hint)
        if not wanted:
            raise ConfigError(f"{cls.__name__} takes a Python object here (a function, an array): set it from Python", key=where)
        raise ConfigError(f"{cls.__name__} takes {wanted} here, but got {shown(value)}", key=where)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        problem = OPTION_BOUNDS.get(name, Bound(0, MAX_OPTION)).problem(value)
        if problem is not None:
            raise ConfigError(problem, key=where)


def _construct(cls: type, key: str, options: dict[str, Any], **given: Any) -> Any:
    import difflib

    valid = [p for p in inspect.signature(cls).parameters if p not in given]
    hints = option_types(cls)
    for name, value in options.items():
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else (f"; valid: {', '.join(valid)}" if valid else "; it takes none")
            raise ConfigError(f"{cls.__name__} has no option {name!r}{hint}", key=f"{key}.{name}")
        _check_option(cls, key, name, value, hints.get(name))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**given, **options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{cls.__name__}: {str(e).splitlines()[0]}", key=key) from None


def sampler_seed(seed: int | None, held: int = 0) -> int | None:
    """The sampler's seed for a study that holds ``held`` trials: ``seed`` itself for a new study
    (the same study file gives the same trials), else a seed past the draws that made the
    trials held, in ``[0, 2**32 - 1]`` whatever the study's size (see :data:`RESUME_SEED_STRIDE`)."""
    if seed is None:
        return None
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, {MAX_SEED}], but got {seed=}.")
    return derive_seed(seed, held * RESUME_SEED_STRIDE)


def make_sampler(cfg: StudyConfig, held: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded with :func:`sampler_seed` of ``study.seed`` (no seed: random);
    ``held``: the trials the study holds already (a re-run, or a recycled worker)."""
    from hpo.space import grid_search_space

    opts = dict(cfg.study.sampler_options)
    seed = sampler_seed(cfg.study.seed, held)
    key = "study.sampler_options"
    if cfg.study.sampler == "tpe":
        return _construct(optuna.samplers.TPESampler, key, opts, seed=seed)
    if cfg.study.sampler == "random":
        return _construct(optuna.samplers.RandomSampler, key, opts, seed=seed)
    return _construct(optuna.samplers.GridSampler, key, opts, search_space=grid_search_space(cfg), seed=seed)


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    """The study's pruner, inside :class:`EpochCap` unless ``objective.cap = false``.

    Its default warm-up and resources are one epoch's checks: steps reported to the pruner are
    checks, epochs or ``objective.checks_per_epoch`` checks per epoch.  Options given in
    ``study.pruner_options`` are taken as they are.
    """
    inner = _inner_pruner(cfg)
    if not cfg.objective.cap:
        return inner
    return EpochCap(inner, cfg.objective.max_epochs, slack=cfg.objective.cap_slack)


def _inner_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    opts = dict(cfg.study.pruner_options)
    key = "study.pruner_options"
    name = cfg.study.pruner
    k = cfg.objective.checks_per_epoch
    if name == "median":
        return _construct(optuna.pruners.MedianPruner, key, {"n_startup_trials": 5, "n_warmup_steps": k, **opts})
    if name == "percentile":
        return _construct(
            optuna.pruners.PercentilePruner, key, {"percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": k, **opts}
        )
    if name == "hyperband":
        return _construct(
            optuna.pruners.HyperbandPruner, key, {"min_resource": k, "max_resource": cfg.objective.max_epochs * k, **opts}
        )
    if name == "successive_halving":
        return _construct(optuna.pruners.SuccessiveHalvingPruner, key, {"min_resource": k, **opts})
    return _construct(optuna.pruners.NopPruner, key, opts)
