"""Reports of a stored study: numbers as DataFrames and dicts, figures drawn from those numbers.

Every ``*_frame``/``*_table``/``counts`` function takes a study (or the frame built from it) and
returns plain data; every ``draw_*``/``plot_*`` function takes that data and draws it with
matplotlib (Agg backend, no display needed).  Nothing here needs a trained model except
:func:`test_accuracy`, which loads the ``.keras`` artifact of the best trial.

What a storage holds is untrusted (anyone can write to a shared one): names and values are
escaped in the markdown and the figures (text is never parsed as math), a stored value that is
no number is left empty, and a piece of the report that cannot be made (the test accuracy, one
figure, the answer) costs only itself, with a :class:`ReportWarning`.
"""

from __future__ import annotations

import functools
import json
import math
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from hpo.errors import HpoError  # noqa: E402
from hpo.names import md_code, md_text, printable  # noqa: E402
from hpo.study import StudyInfo, study_info, trial_history  # noqa: E402

__all__ = [
    "ReportWarning",
    "answers_table",
    "best_curves",
    "comparison_markdown",
    "confirmation_table",
    "counts",
    "draw_learning_curve",
    "epochs_vs_params",
    "history_epochs",
    "history_frame",
    "importances",
    "non_dominated",
    "optimization_history",
    "pareto_section",
    "pareto_table",
    "plot_confirmation",
    "plot_epochs_vs_params",
    "plot_importances",
    "plot_learning_curve",
    "plot_learning_curves",
    "plot_histories",
    "plot_optimization_history",
    "plot_pareto",
    "stop_category",
    "summary_markdown",
    "target_crossing",
    "test_accuracy",
    "trial_title",
    "trials_frame",
    "write_comparison",
    "write_report",
]

BASE_COLUMNS = (
    "number",
    "state",
    "value",
    "epochs_to_target",
    "reached_target",
    "stop_reason",
    "family",
    "n_params",
    "seconds",
    "epochs",
    "seconds_per_epoch",
    "compile_seconds",
    "seconds_to_target",
    "repeat_of",
    "seed",
)
_FAMILY_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")
_INTEGER_COLUMNS = ("n_params", "repeat_of", "seed")
_NUMBER_COLUMNS = ("epochs_to_target", "seconds", "epochs", "seconds_per_epoch", "compile_seconds", "seconds_to_target")
_TEXT_COLUMNS = ("stop_reason", "family")


class ReportWarning(UserWarning):
    """A piece of a report could not be made (it is left out or said to be unavailable); the rest is written."""


def _warn(message: str) -> None:
    warnings.warn(printable(message), ReportWarning, stacklevel=3)


def _first_line(error: BaseException, limit: int = 200) -> str:
    line = (str(error).strip().splitlines() or [""])[0][:limit]
    return printable(f"{type(error).__name__}: {line}" if line else type(error).__name__)


class _PlainLogFormatter(matplotlib.ticker.LogFormatter):
    """The log scale's choice of labelled ticks, written as plain numbers (20,000), not mathtext."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:,.0f}" if x >= 1 else f"{x:g}"


def _no_math(draw: Any) -> Any:
    """Draw with matplotlib's mathtext off: a ``$`` in a stored name or value is a dollar sign, not
    markup; a character the font lacks (a name in another script) is a box, not a warning."""

    @functools.wraps(draw)
    def drawing(*args: Any, **kwargs: Any) -> Any:
        with plt.rc_context({"text.parse_math": False}), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
            return draw(*args, **kwargs)

    return drawing


def _label(text: Any, limit: int = 60) -> str:
    """A stored name for a figure: printable, on one line, at most ``limit`` characters."""
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Numbers


def trial_params(trial: FrozenTrial) -> dict[str, Any]:
    """Searched and fixed parameters of a trial, in one dict."""
    fixed = trial.user_attrs.get("fixed_params")
    return {**trial.params, **(fixed if isinstance(fixed, dict) else {})}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _clean(key: str, value: Any) -> Any:
    """A stored outcome value as its column holds it; ``_BAD`` when it is of no use there."""
    if value is None:
        return None
    if key in _INTEGER_COLUMNS:
        ok = _is_number(value) and math.isfinite(value) and float(value).is_integer()
        return int(value) if ok else _BAD
    if key in _NUMBER_COLUMNS or key.startswith("best_"):
        return (None if math.isnan(value) else value) if _is_number(value) else _BAD
    if key == "reached_target":
        return value if isinstance(value, bool) else _BAD
    if key in _TEXT_COLUMNS:
        return value if isinstance(value, str) else _BAD
    return value


_BAD = object()


def trials_frame(study: optuna.Study, monitor: str | None = None) -> pd.DataFrame:
    """One row per trial: outcome columns (:data:`BASE_COLUMNS`, then ``best_<monitor>``, the
    best value of the monitored metric; ``monitor`` defaults to the study's), then
    ``params_<name>`` for every parameter."""
    if monitor is None:
        try:
            monitor = str(study_info(study)["monitor"])
        except HpoError:  # not an hpo study: the default monitor's column, likely empty
            monitor = "val_accuracy"
    best_key = f"best_{monitor}"
    best_column = f"best_{printable(monitor)}"
    outcome_columns = [*BASE_COLUMNS, best_column]
    rows, bad = [], []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "value": t.value if t.values is not None and len(t.values) == 1 else math.nan,
        }
        for key, column in [*((k, k) for k in BASE_COLUMNS[3:]), (best_key, best_column)]:
            value = _clean(key, ua.get(key))
            if value is _BAD:  # written by another program: left empty, said once below
                bad.append(f"trial {t.number} {column}={printable(repr(ua.get(key)))[:40]}")
                value = None
            row[column] = value
        for name, value in trial_params(t).items():
            row[f"params_{printable(name)}"] = value
        rows.append(row)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        _warn(f"{len(bad)} stored values are not what hpo records and are left empty: {', '.join(bad[:3])}{more}")
    df = pd.DataFrame(rows, columns=outcome_columns if not rows else None)
    if rows:
        params = sorted(c for c in df.columns if c.startswith("params_"))
        df = df[[*outcome_columns, *params]]
        for c in params:  # an integer parameter absent from some trials stays integer
            present = [r[c] for r in rows if r.get(c) is not None]
            if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
                df[c] = df[c].astype("Int64")
    for c in ("epochs_to_target", "epochs"):  # whole epochs, or fractions with sub-epoch checks
        whole = all(math.isfinite(v) and float(v).is_integer() for v in df[c].dropna())
        df[c] = df[c].astype("Int64" if whole else "Float64")
    for c in _INTEGER_COLUMNS:
        df[c] = df[c].astype("Int64")
    return df


def counts(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Trials by state and by stop reason (``none`` for trials that recorded no reason)."""
    return {
        "state": {str(k): int(v) for k, v in df["state"].value_counts().sort_index().items()},
        "stop_reason": {str(k): int(v) for k, v in df["stop_reason"].fillna("none").value_counts().sort_index().items()},
    }


def epochs_vs_params(df: pd.DataFrame, max_epochs: int) -> pd.DataFrame:
    """Architecture size against epochs to target, for every trial that trained.

    ``y`` is the epochs to target where it was reached and ``max_epochs + 1`` (the "not
    reached" row of the figure) otherwise; ``epochs`` is how many epochs actually ran.
    """
    trained = df[df["n_params"].notna() & df["state"].isin(["COMPLETE", "PRUNED"]) & (df["stop_reason"] != "too_large")]
    out = pd.DataFrame(
        {
            "number": trained["number"].astype(int),
            "family": trained["family"].fillna("?").map(_label),
            "n_params": trained["n_params"].astype(int),
            "reached": trained["reached_target"].fillna(False).astype(bool),
            "epochs_to_target": trained["epochs_to_target"],
            "epochs": trained["epochs"],
            "stop_reason": trained["stop_reason"],
        }
    )
    out["y"] = [float(e) if r else float(max_epochs + 1) for e, r in zip(out["epochs_to_target"], out["reached"], strict=True)]
    return out.sort_values(["n_params", "number"]).reset_index(drop=True)


# stop_reason -> how the figures name it, its marker, and its row within the "not reached" band
# (offset in epochs), so that trials stopped for different reasons are told apart where they overlap
STOP_CATEGORIES: dict[str, tuple[str, str, float]] = {
    "target": ("reached", "o", 0.0),
    "pruned": ("pruned", "v", -0.3),
    "capped": ("capped", "s", -0.1),
    "dropped": ("dropped repeat", "d", 0.1),
    "max_epochs": ("out of epochs", "X", 0.3),
    "nan": ("diverged (NaN)", "P", 0.5),
}
_OTHER_CATEGORY = ("other", "*", 0.5)
_CATEGORY_COLORS = {
    "reached": "tab:blue",
    "pruned": "0.55",
    "capped": "tab:purple",
    "dropped repeat": "tab:olive",
    "out of epochs": "tab:orange",
    "diverged (NaN)": "tab:red",
    "other": "k",
}


def _in_order(categories: Sequence[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """The distinct categories, reached first, then as :data:`STOP_CATEGORIES` lists them."""
    order = [*STOP_CATEGORIES.values(), _OTHER_CATEGORY]
    return sorted(set(categories), key=order.index)


def stop_category(stop_reason: Any) -> tuple[str, str, float]:
    """``(label, marker, offset)`` of a stop reason in the figures; unknown reasons are "other"."""
    return STOP_CATEGORIES.get(stop_reason, _OTHER_CATEGORY) if isinstance(stop_reason, str) else _OTHER_CATEGORY


def optimization_history(df: pd.DataFrame) -> pd.DataFrame:
    """Value of each finished trial and the best value so far (COMPLETE trials only count)."""
    done = df[df["state"].isin(["COMPLETE", "PRUNED"]) & df["value"].notna()].sort_values("number")
    best = done["value"].where(done["state"] == "COMPLETE").cummin()
    return pd.DataFrame(
        {
            "number": done["number"].astype(int),
            "state": done["state"],
            "stop_reason": done["stop_reason"],
            "value": done["value"],
            "best": best,
        }
    ).reset_index(drop=True)


# Optuna's default evaluator (optuna.importance.get_param_importances), named as the figure says it.
IMPORTANCE_EVALUATOR = "PED-ANOVA"
FEW_TRIALS = 10  # importances from fewer complete trials are flagged in the figure


def importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's parameter importances (its default evaluator, PED-ANOVA, normalised to sum to
    1); empty when there are too few completed trials to say.  The evaluator's own warnings
    about small studies stay off the terminal: the figure says how many trials it rests on."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError):  # no parameter varies, or a single distinct value
        return {}
    return {k: float(v) for k, v in found.items()}


def best_curves(study: optuna.Study, k: int = 4) -> list[dict[str, Any]]:
    """Histories of the ``k`` best finished trials (COMPLETE before PRUNED, then by value), read
    from the storage (:func:`hpo.study.trial_history`): the curves need no artifact."""
    finished, bad = [], []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        history = trial_history(t)
        if not history or t.value is None:
            continue
        if _is_history(history) and isinstance(t.user_attrs.get("epochs_to_target"), (int, float, type(None))):
            finished.append((t, history))
        else:
            bad.append(t.number)
    if bad:
        _warn(
            f"trials {', '.join(map(str, bad[:5]))}{' ...' if len(bad) > 5 else ''}: stored history is not a Keras history: no curve"
        )
    finished.sort(key=lambda th: (th[0].state != TrialState.COMPLETE, th[0].value, th[0].number))
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "history": history,
            "params": trial_params(t),
            "family": t.user_attrs.get("family"),
            "epochs_to_target": t.user_attrs.get("epochs_to_target"),
        }
        for t, history in finished[:k]
    ]


def _is_history(history: Any) -> bool:
    """A Keras history as hpo stores it: metric name -> list of numbers (``epoch``: the checks)."""
    return isinstance(history, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(_is_number(x) for x in v) for k, v in history.items()
    )


def non_dominated(xs: Sequence[float], ys: Sequence[float]) -> list[bool]:
    """Which points ``(x, y)`` no other point dominates, both to be minimised (no larger in both
    and smaller in one); equal points are all non-dominated, a NaN point never is."""
    points = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
    finite = [p for p in points if not (math.isnan(p[0]) or math.isnan(p[1]))]
    return [
        not (math.isnan(x) or math.isnan(y)) and not any(qx <= x and qy <= y and (qx < x or qy < y) for qx, qy in finite)
        for x, y in points
    ]


PARETO_COLUMNS = [
    "trial",
    "runs",
    "trials",
    "epochs",
    "epochs_min",
    "epochs_max",
    "n_params",
    "seconds_to_target",
    "family",
    "params",
    "answer",
    "front_params",
    "front_seconds",
]


def pareto_table(study: optuna.Study, confirm_seeds: int) -> pd.DataFrame:
    """One row per configuration that reached the target, with the two Pareto fronts it may lie on.

    A configuration is a trial with its repeats (:func:`hpo.answer.configurations`).  Its
    ``epochs`` are the median over its runs where it was run over several seeds (a run that missed
    the target counts as not reached; a median that did not reach leaves it out), else its one
    run's epochs to target; ``seconds_to_target`` is the median over the runs that reached it.
    ``front_params``: no other configuration reaches the target in no more epochs with no more
    parameters and is better in one; ``front_seconds`` likewise with seconds to target.
    """
    import statistics

    from hpo.answer import compute_answer, configurations

    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    answer = compute_answer(trials, confirm_seeds)
    rows = []
    for c in configurations(trials).values():
        if not c.reached:
            continue
        runs = [by_number[n] for n in c["trials"]]
        seconds = [t.user_attrs.get("seconds_to_target") for t in runs if t.user_attrs.get("epochs_to_target") is not None]
        seconds = [float(v) for v in seconds if _is_number(v) and math.isfinite(v)]
        reached = [e for e in c["epochs"] if e is not None]
        first = by_number.get(c["trial"], runs[0])
        family = first.user_attrs.get("family")
        rows.append(
            {
                "trial": c["trial"],
                "runs": c["runs"],
                "trials": c["trials"],
                "epochs": float(c["median"]),
                "epochs_min": min(reached),
                "epochs_max": max(reached),
                "n_params": float(c["n_params"]) if _is_number(c["n_params"]) else math.nan,
                "seconds_to_target": statistics.median(seconds) if seconds else math.nan,
                "family": _label(family) if isinstance(family, str) else "?",
                "params": dict(first.params),  # the searched ones: what tells configurations apart
                "answer": answer is not None and answer["trial"] == c["trial"],
            }
        )
    df = pd.DataFrame(rows, columns=PARETO_COLUMNS[:-2])
    for column, x in (("front_params", "n_params"), ("front_seconds", "seconds_to_target")):
        df[column] = pd.Series(non_dominated(df["epochs"], df[x]), index=df.index, dtype=bool)
    return df.sort_values(["epochs", "n_params", "trial"], ignore_index=True)


def confirmation_table(study: optuna.Study, info: StudyInfo) -> pd.DataFrame:
    """One row per configuration that has repeats: its runs' epochs (not reached: NaN), median,
    range, parameter count, and whether it is the answer."""
    from hpo.answer import compute_answer, configurations

    trials = study.get_trials(deepcopy=False)
    answer = compute_answer(trials, info["confirm_seeds"])
    rows = [
        {
            "trial": c["trial"],
            "runs": c["runs"],
            "epochs": [math.nan if e is None else e for e in c["epochs"]],
            "median": c["median"] if c.reached else math.nan,
            "min": c["min"],
            "max": c["max"],
            "n_params": c["n_params"],
            "answer": answer is not None and answer["trial"] == c["trial"],
        }
        for c in configurations(trials).values()
        if c["runs"] > 1
    ]
    columns = ["trial", "runs", "epochs", "median", "min", "max", "n_params", "answer"]
    return pd.DataFrame(rows, columns=columns).sort_values(["median", "trial"], na_position="last", ignore_index=True)


@_no_math
def plot_confirmation(table: pd.DataFrame, max_epochs: int, title: str, path: str | Path) -> Path:
    """Each repeated configuration's runs as points (not reached: at the top) with its median as a bar."""
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for i, row in table.iterrows():
        ys = [max_epochs + 1 if math.isnan(e) else e for e in row["epochs"]]
        color = "tab:green" if row["answer"] else "tab:blue"
        xs = [i + (j - (len(ys) - 1) / 2) * 0.08 for j in range(len(ys))]  # side by side: equal runs stay visible
        ax.scatter(xs, ys, color=color, alpha=0.7, zorder=3)
        if not math.isnan(row["median"]):
            ax.hlines(row["median"], i - 0.3, i + 0.3, color=color, lw=2.5, zorder=2)
    if len(table):
        ax.set_xticks(
            range(len(table)),
            [f"trial {t}" + (" (answer)" if a else "") for t, a in zip(table["trial"], table["answer"], strict=True)],
            rotation=30,
            ha="right",
            fontsize=8,
        )
    else:
        ax.text(0.5, 0.5, "no configuration was repeated", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(-0.7, max(len(table), 1) - 0.3)
    _epoch_ticks(ax, max_epochs)
    ax.set_ylabel("epochs to target, one point per seed; bar: median")
    ax.grid(True, axis="y", alpha=0.4)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def history_epochs(history: Mapping[str, Sequence[float]]) -> list[float]:
    """The epoch at each check of a history: 1, 2, ... or, with sub-epoch checks, its ``epoch`` list."""
    if history.get("epoch"):
        return list(history["epoch"])
    return list(range(1, max((len(v) for v in history.values()), default=0) + 1))


def history_frame(history: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """A Keras history dict as a frame: one row per check (epoch, 1-based, or a fraction of one)."""
    epochs = history_epochs(history)
    n = len(epochs)
    df = pd.DataFrame({k: list(v) + [math.nan] * (n - len(v)) for k, v in history.items() if k != "epoch"})
    df.insert(0, "epoch", epochs)
    return df


def test_accuracy(
    study: optuna.Study,
    trial: FrozenTrial,
    artifact_store: Any,
    info: StudyInfo,
    workdir: Path,
) -> tuple[float | None, str]:
    """Accuracy of the trial's saved ``.keras`` model on the dataset's test set.

    Returns ``(accuracy, how)``, or ``(None, why not)`` when the model artifact or the data is
    not available.  A model that should be there and cannot be used (missing from the store,
    truncated, not a Keras model, an id outside the store, no test data) is also a
    :class:`ReportWarning` naming it.
    """
    import zipfile

    from optuna.artifacts import download_artifact, get_all_artifact_meta
    from optuna.artifacts.exceptions import ArtifactNotFound

    if artifact_store is None:
        return None, "no artifact folder (see --artifact-dir)"

    def lost(why: str) -> tuple[None, str]:
        why = printable(why)
        _warn(f"{why}: no test accuracy")
        return None, why

    try:
        metas = get_all_artifact_meta(trial, storage=study._storage)
    except Exception as e:  # noqa: BLE001 - any storage trouble only costs this one number
        return lost(f"cannot list the artifacts of trial {trial.number} ({_first_line(e)})")
    models = [m for m in metas if isinstance(m.filename, str) and m.filename.endswith(".keras")]
    if not models:
        return None, f"trial {trial.number} has no saved model (.keras artifact)"
    meta = models[-1]
    what = f"model artifact {printable(repr(meta.filename))} of trial {trial.number}"
    path = workdir / "model.keras"  # never a name from the storage: it could lead anywhere
    try:
        download_artifact(artifact_store=artifact_store, artifact_id=str(meta.artifact_id), file_path=str(path))
    except ArtifactNotFound:
        return lost(f"{what} is missing from the artifact store (id {printable(meta.artifact_id)})")
    except ValueError as e:  # Optuna's "Invalid artifact_id": it points outside the store
        return lost(f"{what} is unreadable: {_first_line(e)}")
    except Exception as e:  # noqa: BLE001
        return lost(f"{what} is unreadable from the artifact store ({_first_line(e)})")
    try:
        with zipfile.ZipFile(path) as z:
            broken = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        broken = ""
    if broken is not None:  # Keras would say "File not found" about it
        return lost(f"{what} is unreadable (truncated or not a .keras file)")

    import numpy as np

    from hpo.config import DataSettings
    from hpo.data import prepare

    try:
        fields = {k: v for k, v in info["data"].items() if k in DataSettings.__dataclass_fields__}
        if fields.get("image_size") is not None:
            fields["image_size"] = tuple(fields["image_size"])  # stored as JSON's list
        split = prepare(DataSettings(**fields))
    except HpoError as e:
        return lost(f"test data not available: {e}")
    except Exception as e:  # noqa: BLE001 - data settings written by another program
        return lost(f"test data not available: stored data settings {_first_line(e)}")
    import keras

    import hpo.models  # noqa: F401 - registers the custom layers a saved model may use

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras' own words about a broken file: the line below says it
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001
        return lost(f"{what} is unreadable by Keras ({_first_line(e)})")
    try:
        predicted = np.argmax(model.predict(split.x_test, batch_size=1024, verbose=0), axis=1)
        acc = float(np.mean(predicted == split.y_test))
    except Exception as e:  # noqa: BLE001 - a model of other images
        return lost(f"{what} does not run on the test images ({_first_line(e)})")
    return acc, f"{len(split.y_test)} test images, model {printable(meta.filename)}"


# --------------------------------------------------------------------------------------------
# Drawing


def trial_title(number: int, params: Mapping[str, Any], outcome: str = "", width: int = 70) -> str:
    """``trial N: k=v k=v ...`` wrapped to a few lines, then an outcome line."""

    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else _label(v, 40)

    text = f"trial {number}: " + " ".join(f"{_label(k, 40)}={fmt(v)}" for k, v in params.items())
    lines = textwrap.wrap(text, width=width) or [f"trial {number}"]
    if outcome:
        lines.append(outcome)
    return "\n".join(lines)


def target_crossing(
    epochs: Sequence[float], values: Sequence[float], epochs_to_target: float | None
) -> tuple[float, float] | None:
    """``(epoch, value)`` of the check at which the monitored curve reached the target: the first
    check at or after ``epochs_to_target``; None when it was not reached or is not in the history."""
    if epochs_to_target is None or not _is_number(epochs_to_target):
        return None
    for epoch, value in zip(epochs, values, strict=False):
        if epoch >= epochs_to_target - 1e-9:
            return float(epoch), float(value)
    return None


def outcome_line(monitor: str, target: float, epochs_to_target: int | None, history: Mapping[str, Sequence[float]]) -> str:
    if epochs_to_target is not None:
        return f"{monitor} >= {target:g} after {epochs_to_target} epoch{'s' if epochs_to_target != 1 else ''}"
    seen = history.get(monitor) or []
    best = max(seen) if seen else math.nan
    ran = history_epochs(history)[len(seen) - 1] if seen else 0
    return f"{monitor} >= {target:g} not reached in {ran:g} epochs (best {best:.4f})"


@_no_math
def draw_learning_curve(
    ax: Any,
    history: Mapping[str, Sequence[float]],
    monitor: str,
    target: float,
    title: str | None = None,
    fontsize: float = 9,
    *,
    epochs_to_target: float | None = None,
    legend: bool = True,
) -> Any:
    """Loss (left axis, red) and accuracy (right axis, blue) per epoch; the target dashed.

    The monitored accuracy is a solid line; the other accuracy (training or validation), when
    present, a thin dotted one; a star where it reached the target (``epochs_to_target``).  The
    legend, unless ``legend=False``, goes below the axes, where it covers no line.  Returns the
    right-hand axis.
    """
    epochs = history_epochs(history)
    ms = 3 if len(epochs) <= 40 else 0

    def series(key: str) -> list[float]:
        return list(history.get(key) or [])

    loss = series("loss")
    ax.plot(epochs[: len(loss)], loss, color="tab:red", lw=2, marker="o", ms=ms, label="loss")
    if series("val_loss"):
        ax.plot(epochs[: len(series("val_loss"))], series("val_loss"), color="tab:red", lw=1, ls=":", label="val_loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="tab:red")
    ax.tick_params(axis="y", labelcolor="tab:red")
    ax.grid(True, alpha=0.4)
    ax2 = ax.twinx()
    other = "accuracy" if monitor.startswith("val_") else "val_accuracy"
    if series(other):
        ax2.plot(epochs[: len(series(other))], series(other), color="tab:blue", lw=1, ls=":", label=other)
    acc = series(monitor)
    ax2.plot(epochs[: len(acc)], acc, color="tab:blue", lw=2, marker="o", ms=ms, label=monitor)
    ax2.axhline(target, color="k", ls="--", lw=1.5, label=f"target {target:g}")
    crossing = target_crossing(epochs, acc, epochs_to_target)
    if crossing is not None:
        ax2.plot(*crossing, marker="*", ms=14, color="gold", mec="k", ls="none", zorder=5, label="target reached")
    ax2.set_ylabel(monitor, color="tab:blue")
    ax2.tick_params(axis="y", labelcolor="tab:blue")
    lows = [v for v in acc + series(other) if math.isfinite(v)]
    ax2.set_ylim(min([target - 0.05, *lows]) - 0.01, min(1.0, max([target, *lows]) + 0.02))
    if epochs:
        ax.set_xlim(min(0.5, epochs[0] / 2), max(epochs) + 0.5)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if legend:
        handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax2.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=fontsize - 1, frameon=False)
    if title:
        ax.set_title(title, fontsize=fontsize)
    return ax2


@_no_math
def plot_learning_curve(
    history: Mapping[str, Sequence[float]],
    monitor: str,
    target: float,
    title: str | None,
    path: str | Path,
    dpi: int = 100,
    epochs_to_target: float | None = None,
) -> Path:
    """One trial's learning curve as a PNG."""
    fig, ax = plt.subplots(figsize=(7, 5.0))
    draw_learning_curve(ax, history, monitor, target, title, epochs_to_target=epochs_to_target)
    return _save(fig, path, dpi)


@_no_math
def plot_learning_curves(curves: Sequence[Mapping[str, Any]], monitor: str, target: float, path: str | Path) -> Path:
    """Learning curves of several trials (from :func:`best_curves`), one panel each; the loss axes
    of all panels share one scale, and so do the accuracy axes; one legend below the panels."""
    n = max(1, len(curves))
    cols = min(2, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.4 * rows + 0.5), squeeze=False)
    pairs = []
    for ax, c in zip(axes.flat, curves, strict=False):
        outcome = outcome_line(monitor, target, c["epochs_to_target"], c["history"])
        label = f"{c['state'].lower()}, value {c['value']:.3f}; {outcome}"
        title = trial_title(c["number"], c["params"], label, width=80)
        ax2 = draw_learning_curve(
            ax, c["history"], monitor, target, title, 8, epochs_to_target=c["epochs_to_target"], legend=False
        )
        pairs.append((ax, ax2))
    for side in (0, 1):  # panels compare the same quantities: one scale each for loss and accuracy
        limits = [p[side].get_ylim() for p in pairs]
        for p in pairs:
            p[side].set_ylim(min(lo for lo, _ in limits), max(hi for _, hi in limits))
    for ax in list(axes.flat)[len(curves) :]:
        ax.axis("off")
    if not curves:
        axes[0][0].text(0.5, 0.5, "no finished trial with a history", ha="center", va="center")
    else:
        entries: dict[str, Any] = {}
        for ax, ax2 in pairs:
            for axis in (ax, ax2):
                for handle, text in zip(*axis.get_legend_handles_labels(), strict=True):
                    entries.setdefault(text, handle)
        fig.legend(
            list(entries.values()), list(entries), loc="lower center", ncol=min(7, len(entries)), fontsize=8, frameon=False
        )
    return _save(fig, path, 90, rect=(0, 0.5 / (4.4 * rows + 0.5), 1, 1))


def _family_colors(families: Sequence[str]) -> dict[str, str]:
    return {f: _FAMILY_COLORS[i % len(_FAMILY_COLORS)] for i, f in enumerate(sorted(set(families)))}


def _save(fig: Any, path: str | Path, dpi: int = 100, **layout: Any) -> Path:
    fig.tight_layout(**layout)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)


def _trial_axes(ax: Any) -> None:
    """Axes of a value per trial number."""
    ax.set_xlabel("trial number")
    ax.set_ylabel("value (epochs to target)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.4)


def _legend_outside(ax: Any, ncol: int = 1, **kwargs: Any) -> Any:
    """The axes' legend to the right of it, outside the plotting area: it never covers a point."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, ncol=ncol, **kwargs)


def _epoch_ticks(ax: Any, max_epochs: int) -> None:
    """Whole epochs 1..max_epochs on the y axis and a "not reached" row above them."""
    ax.set_ylim(0, max_epochs + 2)
    ticks = sorted(
        {t for t in matplotlib.ticker.MaxNLocator(integer=True, nbins=8).tick_values(1, max_epochs) if 1 <= t <= max_epochs}
    )
    ax.set_yticks([*ticks, max_epochs + 1], [*(str(int(t)) for t in ticks), "not\nreached"])


@_no_math
def plot_optimization_history(hist: pd.DataFrame, max_epochs: int, title: str, path: str | Path) -> Path:
    """Each trial's value (its marker says why it stopped: reached, pruned, capped, out of epochs,
    ...; a pruned or capped trial at its last report) and the best value so far."""
    fig, ax = plt.subplots(figsize=(8.6, 4.4))
    labels = [stop_category(r) for r in hist.get("stop_reason", pd.Series([None] * len(hist)))]
    for label, marker, _ in _in_order(labels):
        rows = hist[[c[0] == label for c in labels]]
        name = f"{label} (last report)" if rows["state"].eq("PRUNED").all() else label
        ax.scatter(rows["number"], rows["value"], color=_CATEGORY_COLORS[label], marker=marker, label=name, zorder=3, alpha=0.85)
    if hist["best"].notna().any():
        ax.step(hist["number"], hist["best"].ffill(), where="post", color="tab:red", lw=1.5, label="best so far")
    ax.axhline(max_epochs + 0.5, color="k", ls="--", lw=1, label=f"above: not reached in {max_epochs} epochs")
    _trial_axes(ax)
    _legend_outside(ax, fontsize=8)
    if not len(hist):
        ax.text(0.5, 0.5, "no finished trial", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


@_no_math
def plot_histories(series: Sequence[tuple[str, pd.DataFrame, int]], title: str, path: str | Path) -> Path:
    """Several studies' optimization histories in one figure: each ``(label, history, max_epochs)``
    of ``series`` (from :func:`optimization_history`) in its own colour and marker, trials that
    reached the target filled, the others hollow, and its best value so far as a line."""
    fig, ax = plt.subplots(figsize=(10, 4.4 + 0.25 * 3 * len(series)))
    limits = sorted({m for _, _, m in series})
    for i, (label, hist, _) in enumerate(series):
        color = _FAMILY_COLORS[i % len(_FAMILY_COLORS)]
        marker = _SERIES_MARKERS[i % len(_SERIES_MARKERS)]
        reached = hist["stop_reason"].eq("target") if "stop_reason" in hist else hist["state"].eq("COMPLETE")
        ax.scatter(
            hist["number"][reached],
            hist["value"][reached],
            marker=marker,
            color=color,
            s=30,
            zorder=3,
            label=f"{label}: reached the target",
        )
        ax.scatter(
            hist["number"][~reached],
            hist["value"][~reached],
            marker=marker,
            facecolors="none",
            edgecolors=color,
            s=30,
            alpha=0.7,
            zorder=3,
            label=f"{label}: not reached",
        )
        if hist["best"].notna().any():
            ax.step(hist["number"], hist["best"].ffill(), where="post", color=color, lw=1.8, label=f"{label}: best so far")
    for max_epochs in limits:
        ax.axhline(
            max_epochs + 0.5,
            color="k",
            ls="--",
            lw=1,
            label=f"above: not reached in {max_epochs} epochs" if len(limits) == 1 else f"max_epochs {max_epochs}",
        )
    _trial_axes(ax)
    # below the axes, in two columns: the studies' names make long entries
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


LABELLED_POINTS = 30


def _plain_log_x(ax: Any) -> None:
    ax.set_xscale("log")
    # the log scale's own labels are mathtext ($10^{4}$), which _no_math turns off: plain numbers
    ax.xaxis.set_major_formatter(_PlainLogFormatter())
    ax.xaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


@_no_math
def plot_epochs_vs_params(table: pd.DataFrame, max_epochs: int, title: str, path: str | Path) -> Path:
    """Epochs to target against parameter count, coloured by family; trials that did not reach
    the target in the "not reached" band, one marker (and a slightly shifted row) per stop reason:
    pruned, capped, out of epochs, ..."""
    fig, ax = plt.subplots(figsize=(8.6, 4.4))
    colors = _family_colors(list(table["family"]))
    reasons = table["stop_reason"] if "stop_reason" in table else pd.Series([None] * len(table), index=table.index)
    categories = [("reached", "o", 0.0) if r else stop_category(s) for r, s in zip(table["reached"], reasons, strict=True)]
    several = len(colors) > 1
    for family, color in colors.items():
        for label, marker, offset in _in_order(categories):
            rows = table[(table["family"] == family).to_numpy() & [c[0] == label for c in categories]]
            if not len(rows):
                continue
            hollow = label != "reached" and marker not in ("X", "P", "*")  # overlapping ones stay visible
            ax.scatter(
                rows["n_params"],
                rows["y"] + offset,
                marker=marker,
                s=40 if label == "reached" else 46,
                facecolors="none" if hollow else color,
                edgecolors=color,
                label=f"{family}: {label}" if several else label,
                zorder=3,
            )
    # trial numbers on the fastest trials only: thousands of labels would hide the points
    fastest = table[table["reached"]].sort_values(["y", "number"]).head(LABELLED_POINTS)
    for (x, y), same in fastest.groupby(["n_params", "y"])["number"]:  # equal points: one label "9, 11"
        ax.annotate(", ".join(map(str, sorted(same))), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.axhline(max_epochs + 0.5, color="k", ls="--", lw=1)
    _plain_log_x(ax)
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("epochs to target")
    _epoch_ticks(ax, max_epochs)
    ax.grid(True, alpha=0.4)
    if len(table):
        _legend_outside(ax, fontsize=8, title="stop reason" if not several else None)
    else:
        ax.text(0.5, 0.5, "no trial trained", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


PARETO_NOTE = (
    "one point per configuration that reached the target: the median over its seeds where repeated (bar: range), else its one run"
)
_SERIES_MARKERS = ("o", "s", "^", "D", "v", "P")


@_no_math
def plot_pareto(series: Sequence[tuple[str, pd.DataFrame]], title: str, path: str | Path) -> Path:
    """Epochs to target against parameter count (log scale) and against seconds to target, one
    panel each with one epochs scale; each ``(label, table)`` of ``series`` (from
    :func:`pareto_table`) in its own colour and marker, its non-dominated configurations filled,
    joined by their front and numbered, the dominated ones hollow; a ring on a confirmed answer."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), sharey=True)
    several = len(series) > 1
    top = 1.0
    for i, (label, table) in enumerate(series):
        color = _FAMILY_COLORS[i % len(_FAMILY_COLORS)]
        marker = _SERIES_MARKERS[i % len(_SERIES_MARKERS)]
        name = f"{label}: " if several else ""
        if not len(table):
            continue
        top = max(top, float(table["epochs_max"].max()))
        for ax, x, front in zip(axes, ("n_params", "seconds_to_target"), ("front_params", "front_seconds"), strict=True):
            rows = table[table[x].notna()]
            on, off = rows[rows[front]], rows[~rows[front]]
            spread = rows[rows["runs"] > 1]
            ax.vlines(
                spread[x],
                spread["epochs_min"],
                spread["epochs_max"],
                color=color,
                lw=1,
                alpha=0.6,
                zorder=2,
                label=f"{name}range over seeds" if len(spread) else None,
            )
            ax.scatter(
                off[x],
                off["epochs"],
                marker=marker,
                s=36,
                facecolors="none",
                edgecolors=color,
                alpha=0.7,
                zorder=3,
                label=f"{name}dominated",
            )
            ax.scatter(
                on[x],
                on["epochs"],
                marker=marker,
                s=60,
                color=color,
                edgecolors="k",
                zorder=4,
                label=f"{name}non-dominated (Pareto front)",
            )
            line = on.sort_values([x, "epochs"])
            ax.plot(line[x], line["epochs"], drawstyle="steps-post", color=color, lw=1.2, alpha=0.8, zorder=2)
            for (px, py), same in on.groupby([x, "epochs"])["trial"]:  # equal points: one label "11, 15"
                text = ", ".join(map(str, sorted(same)))
                ax.annotate(text, (px, py), textcoords="offset points", xytext=(5, 4), fontsize=7)
            answer = rows[rows["answer"]]
            ax.scatter(
                answer[x],
                answer["epochs"],
                marker="o",
                s=220,
                facecolors="none",
                edgecolors="k",
                lw=1.5,
                zorder=5,
                label="confirmed answer" if len(answer) and i == 0 else None,
            )
    left, right = axes
    _plain_log_x(left)
    left.set_xlabel("trainable parameters (log scale)")
    right.set_xlabel("seconds to target (training, first epoch's compilation included)")
    left.set_ylabel("epochs to target")
    left.set_ylim(0, top + 1)
    left.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    right.set_xlim(left=0)
    for ax in axes:
        ax.grid(True, alpha=0.4)
        ax.tick_params(labelleft=True)
    for ax, what in zip(axes, ("", " with its seconds recorded"), strict=True):
        if not any(len(c.get_offsets()) for c in ax.collections):  # e.g. trials stored before seconds were
            text = f"no configuration reached the target{what}"
            ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(text, handle)
    columns = 2 if several else 4  # the studies' names make long entries
    if entries:
        fig.legend(
            list(entries.values()), list(entries), loc="lower center", ncol=min(columns, len(entries)), fontsize=8, frameon=False
        )
    rows_of_legend = math.ceil(len(entries) / columns) if entries else 0
    fig.suptitle(f"{title}\n{PARETO_NOTE}", fontsize=10)
    return _save(fig, path, rect=(0, 0.05 * rows_of_legend + 0.01, 1, 1))


@_no_math
def plot_importances(imp: Mapping[str, float], title: str, path: str | Path, n_complete: int | None = None) -> Path:
    """Horizontal bars, most important parameter on top; flagged when they rest on fewer than
    :data:`FEW_TRIALS` complete trials."""
    fig, ax = plt.subplots(figsize=(7, 0.5 * max(3, len(imp)) + 1.2))
    if imp:
        names = list(imp)[::-1]
        ax.barh(range(len(names)), [imp[n] for n in names], color="tab:blue")
        ax.set_yticks(range(len(names)), [_label(n, 40) for n in names])  # positions: equal labels stay two bars
        ax.set_xlabel(f"importance ({IMPORTANCE_EVALUATOR}, Optuna's default evaluator; sums to 1)")
        if n_complete is not None and n_complete < FEW_TRIALS:  # in the title: it covers no bar
            title = f"{title}\nfrom only {n_complete} complete trials: a rough guide"
        for i, n in enumerate(names):
            ax.text(imp[n], i, f" {imp[n]:.2f}", va="center", fontsize=8)
        ax.set_xlim(0, max(imp.values()) * 1.15 or 1)
    else:
        ax.text(0.5, 0.5, "not enough completed trials with varying parameters", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# The report


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_text(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def summary_markdown(
    study: optuna.Study,
    info: StudyInfo,
    df: pd.DataFrame,
    test: tuple[float | None, str] | None,
    figures: Sequence[str] = (),
) -> str:
    """The markdown summary: objective, counts, best trial, test accuracy, figures.  Stored names
    and values are escaped: they show as text, never as markup."""
    c = counts(df)
    monitor = md_code(info["monitor"])
    out = [
        f"# Study {md_code(study.study_name)}",
        "",
        f"Objective: epochs until {monitor} >= {info['target']:g} on {md_text(info['dataset'])}, "
        f"at most {info['max_epochs']} epochs (value {info['max_epochs'] + 1} + gap to target when not reached).",
        "",
        f"{len(df)} trials; {int(df['reached_target'].fillna(False).astype(bool).sum())} reached the target.",
        "",
        _md_table(["state", "trials"], list(c["state"].items())),
        "",
        _md_table(["stop reason", "trials"], list(c["stop_reason"].items())),
        "",
        *_answer_markdown(study, info),
        *_pareto_markdown(study, info),
        "## Best single trial",
        "",
        "Optuna's `best_trial`: the fastest single run (its seed may have been lucky)." if info["confirm_seeds"] > 1 else "",
        "",
    ]
    try:
        best = study.best_trial
    except ValueError:
        out += ["No completed trial yet.", ""]
    else:
        ua = best.user_attrs
        ett = ua.get("epochs_to_target")
        reached = f"{md_text(ett)} epochs to target" if ett is not None else "target not reached"
        out += [
            f"Trial {best.number}: value {best.value:.4f} ({reached}), {md_text(ua.get('n_params'))} parameters, "
            f"{md_text(ua.get('seconds'))} s, best {monitor} {md_text(ua.get('best_' + str(info['monitor'])))}.",
            "",
        ]
        if test is not None:
            acc, how = test
            out += [
                f"Test-set accuracy: **{acc:.4f}** ({md_text(how)})."
                if acc is not None
                else f"Test-set accuracy: not available ({md_text(how)}).",
                "",
            ]
        out += [_md_table(["parameter", "value"], list(trial_params(best).items())), ""]
    if figures:
        out += ["## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figures] + [""]
    return "\n".join(out)


def _answer_markdown(study: optuna.Study, info: StudyInfo) -> list[str]:
    """The answer section; trials written by another program that it cannot use cost only this section."""
    try:
        return _answer_section(study, info)
    except Exception as e:  # noqa: BLE001
        _warn(f"the answer cannot be computed from the stored trials ({_first_line(e)}): summary.md has no answer")
        return ["## Answer", "", f"Not available: the stored trials do not say ({md_text(_first_line(e))}).", ""]


def _pareto_markdown(study: optuna.Study, info: StudyInfo) -> list[str]:
    """The Pareto section; trials it cannot use cost only this section."""
    try:
        table = pareto_table(study, info["confirm_seeds"])
    except Exception as e:  # noqa: BLE001
        _warn(f"the Pareto front cannot be computed from the stored trials ({_first_line(e)}): summary.md lists none")
        return ["## Pareto front", "", f"Not available: the stored trials do not say ({md_text(_first_line(e))}).", ""]
    return pareto_section(table)


def _short_params(params: Mapping[str, Any], limit: int = 8) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else _label(v, 30)

    shown = [f"{_label(k, 30)}={fmt(v)}" for k, v in list(params.items())[:limit]]
    return " ".join(shown) + (" ..." if len(params) > limit else "")


def pareto_section(table: pd.DataFrame, heading: str = "## Pareto front") -> list[str]:
    """Markdown: how the fronts are made, then one row per non-dominated configuration."""
    front = table[table["front_params"] | table["front_seconds"]]
    out = [
        heading,
        "",
        "Epochs to target against parameter count and against seconds to target (`pareto.png`): one point per "
        "configuration that reached the target, its epochs the median over its seeds where it was run over several "
        "(confirmation), else its one run, and its seconds the median over the runs that reached the target. A "
        "configuration is non-dominated by size when no other one needs no more epochs and no more parameters and "
        "fewer of either; by time likewise with seconds.",
        "",
    ]
    if not len(table):
        return [*out, "No configuration reached the target.", ""]

    def cell(v: Any, fmt: str) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    rows = [
        [
            r.trial,
            r.runs,
            cell(r.epochs, "g"),
            f"{r.epochs_min:g}-{r.epochs_max:g}" if r.runs > 1 else "",
            cell(r.n_params, ",.0f"),
            cell(r.seconds_to_target, ".1f"),
            ", ".join(w for w, on in (("size", r.front_params), ("time", r.front_seconds)) if on),
            "yes" if r.answer else "",
            _short_params(r.params),
        ]
        for r in front.itertuples()
    ]
    header = ["trial", "runs", "epochs", "range", "parameters", "seconds to target", "front", "answer", "searched parameters"]
    return [
        *out,
        f"{len(front)} of the {len(table)} configurations that reached the target are non-dominated "
        f"({int(table['front_params'].sum())} by size, {int(table['front_seconds'].sum())} by time):",
        "",
        _md_table(header, rows),
        "",
    ]


def _answer_section(study: optuna.Study, info: StudyInfo) -> list[str]:
    from hpo.answer import answer_line, compute_answer, confirmation_cost

    seeds = info["confirm_seeds"]
    answer = compute_answer(study.get_trials(deepcopy=False), seeds)
    out = ["## Answer", "", answer_line(answer, seeds) + ".", ""]  # numbers only
    if answer is not None:
        out += [_md_table(["parameter", "value"], list(answer["params"].items())), ""]
    table = confirmation_table(study, info)
    if len(table):
        rows = [
            [
                r.trial,
                r.runs,
                ", ".join("not reached" if math.isnan(e) else f"{e:g}" for e in r.epochs),
                "-" if math.isnan(r.median) else f"{r.median:g}",
                r.n_params,
                "yes" if r.answer else "",
            ]
            for r in table.itertuples()
        ]
        out += [
            "Configurations run over several seeds:",
            "",
            _md_table(["trial", "runs", "epochs", "median", "parameters", "answer"], rows),
            "",
        ]
    trials = study.get_trials(deepcopy=False)
    cost = confirmation_cost(trials)
    if cost["repeats"]:
        out += [
            f"Confirmation cost {cost['repeat_epochs']:g} of the study's {cost['epochs']:g} training epochs "
            f"({cost['repeats']} repeats, {cost['dropped']} dropped by the race).",
            "",
        ]
    if cost["capped"]:
        out += [f"Trials capped (stopped once they could no longer beat the answer): {cost['capped']}.", ""]
    return out


def _draw_all(drawings: Mapping[str, Any], out: Path) -> list[Path]:
    """Draw each figure into ``out``; one that cannot be drawn is left out with a warning."""
    figures = []
    for filename, draw in drawings.items():
        try:
            figures.append(draw(out / filename))
        except Exception as e:  # noqa: BLE001 - one figure is never worth the report
            plt.close("all")
            if (out / filename).is_file():
                (out / filename).unlink()  # a half-written figure
            _warn(f"figure {filename} not drawn: {_first_line(e)}")
    return figures


def write_report(
    study: optuna.Study,
    out_dir: str | Path,
    *,
    artifact_store: Any = None,
    top: int = 4,
) -> dict[str, Any]:
    """Write ``trials.csv``, ``summary.md`` and the PNG figures into ``out_dir``; return what was written.

    A figure or the test accuracy that cannot be made is left out with a :class:`ReportWarning`;
    ``trials.csv`` and ``summary.md`` are always written."""
    import tempfile

    info = study_info(study)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = trials_frame(study, info["monitor"])
    df.to_csv(out / "trials.csv", index=False)
    name = _label(study.study_name)
    goal = f"{_label(info['monitor'], 30)} >= {info['target']:g}"
    drawings = {
        "history.png": lambda path: plot_optimization_history(
            optimization_history(df), info["max_epochs"], f"{name}: optimization history ({goal})", path
        ),
        "epochs_vs_params.png": lambda path: plot_epochs_vs_params(
            epochs_vs_params(df, info["max_epochs"]), info["max_epochs"], f"{name}: epochs to {goal} vs. model size", path
        ),
        "pareto.png": lambda path: plot_pareto(
            [(name, pareto_table(study, info["confirm_seeds"]))], f"{name}: Pareto front, epochs to {goal}", path
        ),
        "importances.png": lambda path: plot_importances(
            importances(study),
            f"{name}: parameter importances",
            path,
            n_complete=len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
        ),
        "best_curves.png": lambda path: plot_learning_curves(best_curves(study, top), info["monitor"], info["target"], path),
        "confirmation.png": lambda path: plot_confirmation(
            confirmation_table(study, info), info["max_epochs"], f"{name}: epochs to {goal} over seeds", path
        ),
    }
    figures = _draw_all(drawings, out)
    test = None
    try:
        best = study.best_trial
    except ValueError:
        best = None
    if best is not None:
        with tempfile.TemporaryDirectory() as tmp:
            test = test_accuracy(study, best, artifact_store, info, Path(tmp))
    (out / "summary.md").write_text(summary_markdown(study, info, df, test, [str(f) for f in figures]), encoding="utf-8")
    (out / "counts.json").write_text(json.dumps(counts(df), indent=2) + "\n", encoding="utf-8")
    return {"rows": len(df), "figures": figures, "test": test, "dir": out}


# --------------------------------------------------------------------------------------------
# Several studies side by side


def _families(study: optuna.Study) -> str:
    found = {t.user_attrs.get("family") for t in study.get_trials(deepcopy=False)}
    return ", ".join(sorted(_label(f) for f in found if isinstance(f, str))) or "?"


ANSWER_COLUMNS = [
    "study",
    "family",
    "monitor",
    "target",
    "max_epochs",
    "data",
    "trials",
    "reached",
    "answer_trial",
    "answer_epochs",
    "answer_runs",
    "answer_min",
    "answer_max",
    "n_params",
    "seconds_to_target",
    "best_trial",
    "best_epochs",
]


def _data_line(info: StudyInfo) -> str:
    """``fashion_mnist, 6000 training images``: what the epochs and seconds were spent on."""
    size = info["data"].get("train_size")
    shown = f"{size} training images" if _is_number(size) and size > 0 else "all training images"
    return f"{_label(info['dataset'], 40)}, {shown}"


def answers_table(studies: Sequence[optuna.Study], fronts: Sequence[pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per study: its objective, its confirmed answer (median epochs over seeds, range,
    parameters, median seconds to target; empty when none is confirmed) and its fastest single trial.
    ``fronts``: each study's :func:`pareto_table`, when already made."""
    rows = []
    for i, study in enumerate(studies):
        info = study_info(study)
        df = trials_frame(study, info["monitor"])
        table = fronts[i] if fronts is not None else pareto_table(study, info["confirm_seeds"])
        answer = table[table["answer"]]
        a = answer.iloc[0] if len(answer) else None
        reached = df[df["reached_target"].fillna(False).astype(bool)]
        best = reached.sort_values(["epochs_to_target", "number"]).iloc[0] if len(reached) else None
        rows.append(
            {
                "study": study.study_name,
                "family": _families(study),
                "monitor": info["monitor"],
                "target": info["target"],
                "max_epochs": info["max_epochs"],
                "data": _data_line(info),
                "trials": len(df),
                "reached": len(reached),
                "answer_trial": None if a is None else int(a["trial"]),
                "answer_epochs": None if a is None else float(a["epochs"]),
                "answer_runs": None if a is None else int(a["runs"]),
                "answer_min": None if a is None else float(a["epochs_min"]),
                "answer_max": None if a is None else float(a["epochs_max"]),
                "n_params": None if a is None or math.isnan(a["n_params"]) else int(a["n_params"]),
                "seconds_to_target": None if a is None or math.isnan(a["seconds_to_target"]) else float(a["seconds_to_target"]),
                "best_trial": None if best is None else int(best["number"]),
                "best_epochs": None if best is None else float(best["epochs_to_target"]),
            }
        )
    return pd.DataFrame(rows, columns=ANSWER_COLUMNS)


def comparison_markdown(
    studies: Sequence[optuna.Study], answers: pd.DataFrame, fronts: Sequence[pd.DataFrame], figures: Sequence[str] = ()
) -> str:
    """The comparison's summary: a table of answers (:func:`answers_table`), one row per study, then
    each study's Pareto front (``fronts``, from :func:`pareto_table`)."""

    def num(v: Any, fmt: str = "g") -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    rows = []
    for r in answers.itertuples():
        objective = f"{r.monitor} >= {r.target:g} within {r.max_epochs} epochs; {r.data}"
        if r.answer_trial is None or pd.isna(r.answer_trial):
            answer, runs = "no confirmed answer", "-"
        else:
            answer = f"{num(r.answer_epochs)} (trial {int(r.answer_trial)})"
            runs = f"{int(r.answer_runs)} runs, {num(r.answer_min)}-{num(r.answer_max)}"
        best = "not reached" if pd.isna(r.best_trial) else f"{num(r.best_epochs)} (trial {int(r.best_trial)})"
        rows.append(
            [
                r.study,
                r.family,
                objective,
                f"{r.reached} of {r.trials}",
                answer,
                runs,
                num(r.n_params, ",.0f"),
                num(r.seconds_to_target, ".1f"),
                best,
            ]
        )
    header = [
        "study",
        "family",
        "objective",
        "trials reached",
        "answer: median epochs",
        "over seeds",
        "parameters",
        "seconds to target",
        "best single trial",
    ]
    out = [
        "# Comparing studies " + ", ".join(md_code(s.study_name) for s in studies),
        "",
        "Each study's confirmed answer: the configuration with the lowest median epochs to its target over "
        "several seeds (parameters and the median seconds to target of its runs), beside the fastest single trial "
        "(its seed may have been lucky).",
        "",
        _md_table(header, rows),
        "",
    ]
    for study, table in zip(studies, fronts, strict=True):
        out += pareto_section(table, f"## Pareto front of {md_code(study.study_name)}")
    if figures:
        out += ["## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figures] + [""]
    return "\n".join(out)


def _front_or_none(study: optuna.Study, info: StudyInfo) -> pd.DataFrame:
    """The study's :func:`pareto_table`; trials it cannot use leave it empty, with a warning."""
    try:
        return pareto_table(study, info["confirm_seeds"])
    except Exception as e:  # noqa: BLE001
        _warn(f"study {printable(study.study_name)!r}: no Pareto front or answer from the stored trials ({_first_line(e)})")
        return pd.DataFrame(columns=PARETO_COLUMNS).astype({"answer": bool, "front_params": bool, "front_seconds": bool})


def write_comparison(studies: Sequence[optuna.Study], out_dir: str | Path) -> dict[str, Any]:
    """Write ``summary.md`` (a table of answers, one row per study, and each study's Pareto front),
    ``answers.csv`` and the figures ``history.png`` and ``pareto.png``, which draw every study in
    its own colour and marker, into ``out_dir``; return what was written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    infos = [study_info(s) for s in studies]
    fronts = [_front_or_none(s, i) for s, i in zip(studies, infos, strict=True)]
    answers = answers_table(studies, fronts)
    answers.to_csv(out / "answers.csv", index=False)
    labels = [
        f"{_label(s.study_name, 40)} ({_label(i['monitor'], 20)} >= {i['target']:g})" for s, i in zip(studies, infos, strict=True)
    ]
    names = " vs. ".join(_label(s.study_name, 40) for s in studies)
    drawings = {
        "history.png": lambda path: plot_histories(
            [
                (label, optimization_history(trials_frame(s, i["monitor"])), i["max_epochs"])
                for label, s, i in zip(labels, studies, infos, strict=True)
            ],
            f"optimization history: {names}",
            path,
        ),
        "pareto.png": lambda path: plot_pareto(
            list(zip(labels, fronts, strict=True)),
            f"Pareto fronts: {names}",
            path,
        ),
    }
    figures = _draw_all(drawings, out)
    (out / "summary.md").write_text(comparison_markdown(studies, answers, fronts, [str(f) for f in figures]), encoding="utf-8")
    return {"rows": len(answers), "figures": figures, "dir": out}
