"""Search space -> ``trial.suggest_*`` -> :class:`Params` (plain data, no Optuna inside).

Only this module calls ``trial.suggest_*``.  A key fixed by a scalar in the study file is not
an Optuna parameter (nothing to search); it still reaches the model through :class:`Params`
and is recorded in the trial's ``fixed_params`` user attribute.

Parameter names are the space keys (``layers``, ``units_l0``, ``learning_rate`` ...).  When the
model family itself is searched (``model.family = ["dense", ...]``) the trial first suggests
``family`` and every other name is prefixed with it (``dense_units_l0``), so that two families
never share a parameter with different meanings or ranges.  The custom family's free keys
(``[space.custom]``) are named the same way (``filters``, or ``custom_filters`` when searched).
"""

from __future__ import annotations

import dataclasses
import decimal
import math
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.config import (
    CUSTOM_FAMILY,
    MAX_GRID_POINTS,
    SPACE_SCHEMAS,
    Choice,
    Fixed,
    ParamSpec,
    StudyConfig,
    indexed_key,
    resolve_key,
    spec_values_max,
)
from hpo.errors import ConfigError

__all__ = [
    "Params",
    "distributions",
    "enqueue_errors",
    "grid_search_space",
    "param_name",
    "params_from_trial",
    "probe_params",
    "sample",
    "FAMILY_SAMPLERS",
]


@dataclasses.dataclass(frozen=True)
class Params:
    """Everything a model builder and the training loop need for one trial."""

    family: str
    arch: Mapping[str, Any]
    learning_rate: float
    optimizer: str
    batch_size: int
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    builder: str | None = None  # the custom family's model.builder; its ``arch`` is the builder's params

    def as_dict(self) -> dict[str, Any]:
        out = {"family": self.family, **dict(self.arch)}
        out.update(learning_rate=self.learning_rate, optimizer=self.optimizer, batch_size=self.batch_size)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def param_name(cfg: StudyConfig, family: str, key: str) -> str:
    return f"{family}_{key}" if cfg.model.searched else key


def _distribution(spec: ParamSpec) -> BaseDistribution | None:
    if isinstance(spec, Fixed):
        return None
    if isinstance(spec, Choice):
        return CategoricalDistribution(list(spec.values))
    if spec.is_int:
        return IntDistribution(int(spec.low), int(spec.high), log=spec.log, step=int(spec.step or 1))
    return FloatDistribution(float(spec.low), float(spec.high), log=spec.log, step=spec.step)


class _Suggester:
    """Suggests the keys of one family, remembering what was fixed."""

    def __init__(self, trial: optuna.Trial, cfg: StudyConfig, family: str):
        self.trial = trial
        self.cfg = cfg
        self.family = family
        self.specs = cfg.space[family]
        self.fixed: dict[str, Any] = {}

    def __call__(self, key: str, spec_key: str | None = None) -> Any:
        spec = self.specs[spec_key or key]
        name = param_name(self.cfg, self.family, key)
        dist = _distribution(spec)
        if dist is None:
            self.fixed[name] = spec.value
            return spec.value
        if isinstance(dist, CategoricalDistribution):
            return self.trial.suggest_categorical(name, dist.choices)
        if isinstance(dist, IntDistribution):
            return self.trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
        return self.trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)

    def params(self, arch: Mapping[str, Any]) -> Params:
        return Params(
            family=self.family,
            arch=dict(arch),
            learning_rate=float(self("learning_rate")),
            optimizer=self("optimizer"),
            batch_size=int(self("batch_size")),
            fixed=self.fixed,
            builder=self.cfg.model.builder if self.family == CUSTOM_FAMILY else None,
        )


def _sample_dense(s: _Suggester) -> Params:
    layers = int(s("layers"))
    units = tuple(int(s(f"units_l{i}", "units")) for i in range(layers))
    arch = {
        "units": units,
        "activation": s("activation"),
        "initializer": s("initializer"),
        "dropout": float(s("dropout")),
        "batchnorm": bool(s("batchnorm")),
    }
    return s.params(arch)


def _dense_names(specs: Mapping[str, ParamSpec]) -> dict[str, str]:
    """Optuna name -> space key, for every name the dense family can suggest."""
    names = {k: k for k in specs if k != "units"}
    for i in range(int(spec_values_max(specs["layers"]))):
        names[f"units_l{i}"] = "units"
    return names


def _indexed(specs: Mapping[str, ParamSpec], key: str, *indices: int) -> tuple[str, str]:
    """(Optuna name, governing space key) of an Inception key at a stage/block."""
    per = SPACE_SCHEMAS["inception"][key].per
    return indexed_key(key, per, indices), resolve_key(specs, "inception", key, indices)


def _sample_inception(s: _Suggester) -> Params:
    stages = int(s("stages"))
    blocks: list[tuple[tuple[int, int], ...]] = []
    down: list[int] = []
    for i in range(stages):
        n_blocks = int(s(*_indexed(s.specs, "blocks", i)))
        stage = []
        for j in range(n_blocks):
            f1 = int(s(*_indexed(s.specs, "filters_1x1", i, j)))
            f3 = int(s(*_indexed(s.specs, "filters_3x3", i, j)))
            stage.append((f1, f3))
        blocks.append(tuple(stage))
        down.append(int(s(*_indexed(s.specs, "down_filters", i))))
    arch = {
        "stem_filters": int(s("stem_filters")),
        "blocks": tuple(blocks),
        "down_filters": tuple(down),
        "activation": s("activation"),
        "initializer": s("initializer"),
        "batchnorm": bool(s("batchnorm")),
        "batchnorm_momentum": float(s("batchnorm_momentum")),
        "dropout": float(s("dropout")),
    }
    return s.params(arch)


def _inception_names(specs: Mapping[str, ParamSpec]) -> dict[str, str]:
    """Optuna name -> governing space key, for every name the Inception family can suggest."""
    schema = SPACE_SCHEMAS["inception"]
    names = {k: k for k, spec in schema.items() if not spec.per}
    for i in range(int(spec_values_max(specs["stages"]))):
        for key in ("blocks", "down_filters"):
            name, governing = _indexed(specs, key, i)
            names[name] = governing
        for j in range(int(spec_values_max(specs[names[f"blocks_s{i}"]]))):
            for key in ("filters_1x1", "filters_3x3"):
                name, governing = _indexed(specs, key, i, j)
                names[name] = governing
    return names


def _sample_custom(s: _Suggester) -> Params:
    """The free keys of ``[space.custom]``, in the file's order, as the builder's params."""
    shared = SPACE_SCHEMAS[CUSTOM_FAMILY]
    return s.params({key: s(key) for key in s.specs if key not in shared})


def _custom_names(specs: Mapping[str, ParamSpec]) -> dict[str, str]:
    return {k: k for k in specs}


# family -> (sampler, names): the sampler suggests one trial's parameters, names lists every
# Optuna name the family can suggest with the space key that governs it.
FAMILY_SAMPLERS: dict[str, tuple[Callable[[_Suggester], Params], Callable[[Mapping[str, ParamSpec]], dict[str, str]]]] = {
    "dense": (_sample_dense, _dense_names),
    "inception": (_sample_inception, _inception_names),
    CUSTOM_FAMILY: (_sample_custom, _custom_names),
}


def sample(trial: optuna.Trial, cfg: StudyConfig) -> Params:
    """Draw one trial's parameters from the study's search space."""
    families = cfg.model.family
    family = trial.suggest_categorical("family", list(families)) if cfg.model.searched else families[0]
    sampler, _ = FAMILY_SAMPLERS[family]
    return sampler(_Suggester(trial, cfg, family))


def params_from_trial(cfg: StudyConfig, trial: optuna.trial.FrozenTrial) -> Params:
    """The parameters a finished trial trained with (e.g. to rebuild and save the best model)."""
    return sample(optuna.trial.FixedTrial(dict(trial.params)), cfg)


def probe_params(cfg: StudyConfig, family: str) -> Params:
    """The parameters of ``family`` with every searched key at its first value (a range's low, a
    list's first value): what a check at start-up builds, with no trial."""
    return FAMILY_SAMPLERS[family][0](_Suggester(_Probe({}), cfg, family))  # type: ignore[arg-type]


def _all_distributions(cfg: StudyConfig):
    """Yield (optuna name, dotted space key, distribution) for every searchable parameter."""
    if cfg.model.searched:
        yield "family", "model.family", CategoricalDistribution(list(cfg.model.family))
    for family in cfg.model.family:
        specs = cfg.space[family]
        _, names = FAMILY_SAMPLERS[family]
        for name, key in names(specs).items():
            dist = _distribution(specs[key])
            if dist is not None:
                yield param_name(cfg, family, name), f"space.{family}.{key}", dist


def distributions(cfg: StudyConfig) -> dict[str, BaseDistribution]:
    """Every Optuna parameter the study can suggest, with its distribution."""
    return {name: dist for name, _, dist in _all_distributions(cfg)}


def grid_search_space(cfg: StudyConfig) -> dict[str, list[Any]]:
    """The grid for ``study.sampler = "grid"``: lists and stepped ranges only, of at most
    :data:`~hpo.config.MAX_GRID_POINTS` points (counted before any is made)."""
    counts: dict[str, int] = {}
    dists = list(_all_distributions(cfg))
    for name, key, dist in dists:
        if isinstance(dist, CategoricalDistribution):
            counts[name] = len(dist.choices)
        elif dist.step is not None:
            counts[name] = int((_exact(dist.high) - _exact(dist.low)) // _exact(dist.step)) + 1
        else:
            raise ConfigError("the grid sampler needs a list or a stepped range here, not a continuous range", key=key)
    if not counts:
        raise ConfigError("the grid sampler needs at least one searched key in the space", key="study.sampler")
    points = math.prod(counts.values())
    if points > MAX_GRID_POINTS:
        largest = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
        what = ", ".join(f"{name} {n}" for name, n in largest)
        size = f"{points:,}" if points < 10**15 else f"about 10^{len(str(points)) - 1}"
        raise ConfigError(
            f"the grid holds {size} points (the product of the value counts; largest: {what}), "
            f"at most {MAX_GRID_POINTS:,} may be searched: use fewer values, a larger step or another sampler",
            key="study.sampler",
        )
    grid: dict[str, list[Any]] = {}
    for name, _, dist in dists:
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution):
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        else:  # exact decimal steps: 0.1 * 3 is 0.3 here, not 0.30000000000000004
            grid[name] = [float(_exact(dist.low) + i * _exact(dist.step)) for i in range(counts[name])]
    return grid


def _exact(x: float) -> decimal.Decimal:
    return decimal.Decimal(str(x))


class _Probe:
    """Stands in for a trial: answers ``suggest_*`` with the given values (else the first value of
    the range or choice) and remembers which names were asked."""

    def __init__(self, given: Mapping[str, Any]):
        self.given = given
        self.asked: dict[str, BaseDistribution] = {}

    def _answer(self, name: str, dist: BaseDistribution, default: Any) -> Any:
        self.asked[name] = dist
        return self.given.get(name, default)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._answer(name, CategoricalDistribution(list(choices)), choices[0])

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return self._answer(name, IntDistribution(low, high, step=step, log=log), low)

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        return self._answer(name, FloatDistribution(low, high, step=step, log=log), low)


def _outside(dist: BaseDistribution, value: Any) -> str | None:
    """Why ``value`` is not a value of ``dist`` (None: it is)."""
    if isinstance(dist, CategoricalDistribution):
        if not any(type(value) is type(c) and value == c for c in dist.choices):
            return f"{value!r} is not one of {', '.join(repr(c) for c in dist.choices)}"
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, but got {value!r}"
    if isinstance(dist, IntDistribution) and not float(value).is_integer():
        return f"must be an integer, but got {value!r}"
    if not dist.low <= value <= dist.high:
        return f"{value!r} is outside the space's range {dist.low:g} to {dist.high:g}"
    if dist.step is not None and not math.isclose((value - dist.low) / dist.step, round((value - dist.low) / dist.step)):
        return f"{value!r} is not on the range's step {dist.step:g} from {dist.low:g}"
    return None


def enqueue_errors(cfg: StudyConfig, params: Mapping[str, Any]) -> tuple[str | None, str] | None:
    """(parameter name, reason) of the first problem of a ``study.enqueue`` table, or None.

    Names are the trial's parameter names (``layers``, ``units_l0``, ...); a name the space fixes
    by a scalar may be given with that same value.  Names left out are sampled as usual.
    """
    families = cfg.model.family
    if cfg.model.searched and "family" in params:
        family = params["family"]
        if family not in families:
            return "family", f"{family!r} is not one of {', '.join(repr(f) for f in families)}"
    else:
        family = families[0]
    searched = distributions(cfg)
    probe = _Probe(params)
    sampler, _ = FAMILY_SAMPLERS[family]
    suggester = _Suggester(probe, cfg, family)  # type: ignore[arg-type]
    if cfg.model.searched:
        probe.asked["family"] = CategoricalDistribution(list(families))
    for name, value in params.items():
        if name in probe.asked:
            continue
        dist = searched.get(name)
        if dist is not None:
            problem = _outside(dist, value)
            if problem is not None:
                return name, problem
    try:
        sampler(suggester)
    except (TypeError, ValueError) as e:
        return None, f"cannot build parameters from {dict(params)!r}: {e}"
    for name, value in params.items():
        if name in probe.asked:
            problem = _outside(probe.asked[name], value)
            if problem is not None:
                return name, problem
        elif name in suggester.fixed:
            if suggester.fixed[name] != value:
                return name, f"the space fixes it to {suggester.fixed[name]!r}, but got {value!r}"
        elif name in searched or name in _fixed_names(cfg):
            return name, "not used by a trial with the other parameters given (e.g. a layer beyond layers)"
        else:
            known = sorted(searched)
            return name, f"not a parameter of the space; parameters: {', '.join(known)}"
    return None


def _fixed_names(cfg: StudyConfig) -> set[str]:
    names = set()
    for family in cfg.model.family:
        specs = cfg.space[family]
        _, list_names = FAMILY_SAMPLERS[family]
        names |= {param_name(cfg, family, n) for n, key in list_names(specs).items() if isinstance(specs[key], Fixed)}
    return names
