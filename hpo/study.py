"""Opening a study: create it or join it by name, the settings stored on it, its note.

A study hpo made holds, in its user attribute ``hpo``, the settings its costs depend on
(``identity``: monitor, target, max_epochs, checks per epoch, dataset), its data settings and
the study file's tables after overrides (``config``).  Resuming with other settings is refused,
reading commands find the objective there, and ``confirm`` rebuilds the study from it.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import check_distribution_compatibility

from hpo.config import StudyConfig, parse_config
from hpo.data import data_identity
from hpo.errors import HpoError, StudyMismatchError
from hpo.names import printable
from hpo.note import save_study_note
from hpo.search import make_pruner, make_sampler
from hpo.space import distributions
from hpo.storage import use_wal

__all__ = [
    "HISTORY_ATTR",
    "STUDY_ATTR",
    "StudyInfo",
    "enqueue_warm_start",
    "load_study",
    "open_study",
    "save_note",
    "store_history",
    "stored_config",
    "study_info",
    "trial_history",
]

STUDY_ATTR = "hpo"  # study user attr holding the settings costs depend on
ARTIFACT_DIR_KEY = "artifact_dir"  # in STUDY_ATTR: the absolute folder of the study's artifact store
DEFAULT_ARTIFACT_DIR = "studies/artifacts"  # for storages that are no SQLite file
HISTORY_ATTR = "history"  # trial system attr: the per-epoch history (a user attr in older studies)


class StudyInfo(dict):
    """What the report needs to know about the objective: monitor, target, max_epochs, dataset,
    data, confirm_seeds."""


def load_study(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Load a study by name; an unknown name is one line listing the names that exist."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
        known = ", ".join(printable(n) for n in names) if names else "none"  # names anyone may have chosen
        raise HpoError(f"no study named {name!r} in this storage; studies: {known}") from None


def store_history(trial: optuna.Trial, history: dict[str, list[float]]) -> None:
    """Store a trial's per-epoch history (metric name -> one number per check) in its system
    attributes, which optuna-dashboard does not show: as a user attribute, one long JSON string,
    it made the dashboard's trial rows hundreds of pixels high."""
    trial.storage.set_trial_system_attr(trial._trial_id, HISTORY_ATTR, history)


def trial_history(trial: optuna.trial.FrozenTrial) -> Any:
    """A trial's stored per-epoch history, as stored (None if it has none): the system
    attribute, else the user attribute where earlier hpo versions kept it."""
    found = trial.system_attrs.get(HISTORY_ATTR)
    return found if found is not None else trial.user_attrs.get(HISTORY_ATTR)


def study_info(study: optuna.Study) -> StudyInfo:
    """The objective settings hpo stored on the study (``user_attrs["hpo"]``)."""
    attr = study.user_attrs.get(STUDY_ATTR)
    if not isinstance(attr, dict) or "identity" not in attr:
        raise HpoError(f"study {study.study_name!r} was not created by hpo (it has no {STUDY_ATTR!r} user attribute)")
    try:  # anyone can write a study's attributes in a shared storage
        ident = attr["identity"]
        data = dict(attr.get("data") or {"dataset": ident.get("data.dataset", "fashion_mnist")})
        info = StudyInfo(
            monitor=str(ident["objective.monitor"]),
            target=float(ident["objective.target"]),
            max_epochs=int(ident["objective.max_epochs"]),
            dataset=str(ident.get("data.dataset", data.get("dataset"))),
            data=data,
            confirm_seeds=int(((attr.get("config") or {}).get("study") or {}).get("confirm_seeds", 3)),
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        raise HpoError(
            f"study {study.study_name!r}: its {STUDY_ATTR!r} user attribute is damaged ({type(e).__name__}: {e!r})"
        ) from None
    return info


def open_study(
    cfg: StudyConfig,
    storage: optuna.storages.BaseStorage,
    study_name: str | None = None,
    *,
    artifact_dir: str | Path | None = None,
) -> optuna.Study:
    """Create the study or join it by name; refuse to resume one whose costs mean something else.

    A new study records ``artifact_dir`` (made absolute), where its artifacts are kept.  A study
    that another program made is joined only while it is empty (hpo stores its settings on it
    then); one holding trials is refused, since nothing says what its values mean.

    Nothing is written when the study exists and does not match.  An SQLite file is switched to
    its write-ahead log (:func:`hpo.storage.use_wal`) only once the study is open.
    """
    name = study_name or cfg.study.name
    sampler, pruner = make_sampler(cfg), make_pruner(cfg)
    identity = {**cfg.identity(), **data_identity(cfg.data)}
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        study = None
    if study is not None:
        if study.directions != [optuna.study.StudyDirection.MINIMIZE]:
            raise StudyMismatchError(f"study {name!r} exists and is not a minimize study: choose another --study-name")
        if not isinstance(study.user_attrs.get(STUDY_ATTR), dict):
            study = _adopt(study, cfg, identity, artifact_dir)
        stored = study.user_attrs.get(STUDY_ATTR, {}).get("identity", {})
        for key, value in identity.items():
            if key == "data.sha256" and key in stored and stored[key] != value:
                raise StudyMismatchError(
                    f"{cfg.source}: data.path: {cfg.data.path!r} changed since study {name!r} was run on it "
                    f"(SHA-256 {stored[key][:12]}..., now {value[:12]}...); costs on other data cannot be compared: "
                    "use another --study-name"
                )
            if key in stored and stored[key] != value:
                raise StudyMismatchError(
                    f"{cfg.source}: {key}: study {name!r} was run with {stored[key]!r}, not {value!r}; "
                    "costs under different settings cannot be compared: use another --study-name"
                )
        _check_space(cfg, study, distributions(cfg))
        use_wal(storage)
        return study
    study = optuna.create_study(
        storage=storage, study_name=name, direction="minimize", sampler=sampler, pruner=pruner, load_if_exists=True
    )
    if STUDY_ATTR not in study.user_attrs:
        try:
            _store_settings(study, cfg, identity, artifact_dir)
        except Exception:  # another worker created the same study at the same instant and wrote them first
            if STUDY_ATTR not in optuna.load_study(study_name=name, storage=storage).user_attrs:
                raise
        else:
            enqueue_warm_start(study, cfg)
            save_note(study, cfg)
    use_wal(storage)
    return study


ADOPT_WAIT = 5.0  # seconds a study without settings and trials may be another hpo worker's, just created


def _adopt(study: optuna.Study, cfg: StudyConfig, identity: dict[str, Any], artifact_dir: Any) -> optuna.Study:
    """A study without hpo's settings: refused when it holds trials; when empty, first given the
    moment another hpo worker that has just created it needs to store them, then adopted."""
    deadline = time.monotonic() + ADOPT_WAIT
    while True:  # user_attrs and get_trials read the storage each time
        if isinstance(study.user_attrs.get(STUDY_ATTR), dict):
            return study
        if study.get_trials(deepcopy=False):
            raise StudyMismatchError(
                f"study {study.study_name!r} was not created by hpo (it stores no objective settings) and holds trials "
                "whose values hpo cannot interpret: choose a new --study-name"
            )
        if time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    _store_settings(study, cfg, identity, artifact_dir)
    enqueue_warm_start(study, cfg)
    save_note(study, cfg)
    return study


def _store_settings(study: optuna.Study, cfg: StudyConfig, identity: dict[str, Any], artifact_dir: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["epochs_to_target"])
    study.set_user_attr(
        STUDY_ATTR,
        {
            "identity": identity,
            "source": cfg.source,
            "data": _data_settings(cfg),
            "config": cfg.raw,
            **({ARTIFACT_DIR_KEY: str(Path(artifact_dir).absolute())} if artifact_dir is not None else {}),
        },
    )


def _data_settings(cfg: StudyConfig) -> dict[str, Any]:
    """The data settings as stored (``report`` reloads the test set with them): the user's file
    or folder by its absolute path, so that it is found from any folder."""
    data = dataclasses.asdict(cfg.data)
    if data["path"] is not None:
        data["path"] = str(Path(data["path"]).expanduser().absolute())
    return data


def enqueue_warm_start(study: optuna.Study, cfg: StudyConfig) -> None:
    """``study.enqueue``: the configurations the study starts with (checked by hpo.search.check_config)."""
    searched = distributions(cfg)
    for i, params in enumerate(cfg.study.enqueue):  # names the space fixes are not Optuna parameters
        study.enqueue_trial({k: v for k, v in params.items() if k in searched}, user_attrs={"warm_start": i})


def save_note(study: optuna.Study, cfg: StudyConfig, answer: Any = None) -> None:
    """The study's markdown note for optuna-dashboard; a note that cannot be saved is a warning."""
    try:
        save_study_note(study, cfg, answer)
    except Exception as e:  # noqa: BLE001 - a note is never worth a study
        warnings.warn(f"study {study.study_name!r}: note not saved: {type(e).__name__}: {e}", stacklevel=2)


def _check_space(cfg: StudyConfig, study: optuna.Study, new: dict[str, Any]) -> None:
    """A categorical parameter must keep its choices across runs of one study (Optuna's rule)."""
    seen: set[str] = set()
    for trial in study.get_trials(deepcopy=False):
        for name, old in trial.distributions.items():
            if name in seen or name not in new:
                continue
            seen.add(name)
            try:
                check_distribution_compatibility(old, new[name])
            except ValueError:
                raise StudyMismatchError(
                    f"{cfg.source}: parameter {name!r} of study {study.study_name!r} was searched as {old}, "
                    f"now {new[name]}; Optuna cannot mix them: use another --study-name"
                ) from None


def stored_config(study: optuna.Study) -> StudyConfig:
    """The study file a study was made from, rebuilt from the tables stored on it."""
    stored = study.user_attrs.get(STUDY_ATTR) or {}
    if not stored.get("config"):
        raise HpoError(f"study {study.study_name!r} stores no study file (made by an older hpo): pass --study-file FILE")
    return parse_config(stored["config"], source=f"study {study.study_name!r}", default_name=study.study_name)


# --------------------------------------------------------------------------------------------
# Where a study's artifacts are


def default_artifact_folder(url: str) -> Path:
    """``artifacts`` beside an SQLite file (``studies/artifacts`` for ``studies/hpo.db``), else
    ``studies/artifacts`` in the current folder; absolute."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return (Path(url[len("sqlite:///") :]).parent / "artifacts").absolute()
    return Path(DEFAULT_ARTIFACT_DIR).absolute()


def artifact_folder(url: str, given: str | Path | None = None, *, study: optuna.Study | None = None) -> Path:
    """The artifact folder: ``given`` (``--artifact-dir``), else the one ``study`` records, else
    the default for ``url`` (a study made before hpo recorded it, or none yet)."""
    if given:
        return Path(given).absolute()
    if study is not None:
        recorded = (study.user_attrs.get(STUDY_ATTR) or {}).get(ARTIFACT_DIR_KEY)
        if recorded:
            return Path(recorded)
    return default_artifact_folder(url)


def has_artifacts(study: optuna.Study) -> bool:
    """True if some trial of ``study`` has an artifact (Optuna's ``artifacts:`` system attrs)."""
    return any(k.startswith("artifacts:") for t in study.get_trials(deepcopy=False) for k in t.system_attrs)


def check_artifact_folder(study: optuna.Study, folder: Path) -> str | None:
    """Why ``folder`` cannot serve ``study``'s artifacts (it is missing while trials have some), or None."""
    if folder.is_dir() or not has_artifacts(study):
        return None
    return (
        f"study {study.study_name!r} keeps its artifacts in {str(folder)!r}, which is missing: "
        "pass --artifact-dir DIR where they are now"
    )
