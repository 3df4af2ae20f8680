"""Reports, per-trial artifacts, TensorBoard logs and the study note, from a small real study.

One study is run through the CLI (real Fashion-MNIST slice, real SQLite, real artifact store)
and shared by the tests of this module; tests that add trials use their own copy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import matplotlib.image
import optuna
import pandas as pd
import pytest
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
from optuna.trial import TrialState

from hpo.api import load_config
from hpo.reporting import (
    BASE_COLUMNS,
    ReportWarning,
    best_curves,
    counts,
    epochs_vs_params,
    optimization_history,
    trials_frame,
    write_report,
)
from hpo.storage import make_storage
from hpo.study import open_study, study_info
from tests.conftest import STUDIES, run_cli

N_TRIALS = 4
MAX_EPOCHS = 2
TARGET = 0.72
# quickstart.toml fixes initializer, dropout and optimizer: they must reach the CSV too.
STUDY_ARGS = [
    str(STUDIES / "quickstart.toml"),
    "--study-name",
    "rep",
    "--n-trials",
    str(N_TRIALS),
    "--no-progress",
    "--set",
    "data.train_size=600",
    "--set",
    f"objective.max_epochs={MAX_EPOCHS}",
    "--set",
    f"objective.target={TARGET}",
    "--set",
    "study.pruner=none",
    "--set",
    "space.dense.layers=1",
    "--set",
    "space.dense.units=[16, 64, 256]",
]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 4-trial study with artifacts and TensorBoard logs, run by the CLI."""
    root = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{root / 'd.db'}"
    art, tb = root / "art", root / "tb"
    proc = run_cli(
        "study",
        *STUDY_ARGS,
        "--storage",
        url,
        "--artifact-dir",
        str(art),
        "--tensorboard",
        str(tb),
        "--tensorboard-batches",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"root": root, "url": url, "art": art, "tb": tb, "stdout": proc.stdout, "stderr": proc.stderr}


def _study(made: dict) -> optuna.Study:
    return optuna.load_study(study_name="rep", storage=make_storage(made["url"]))


def test_trials_frame_has_one_row_per_trial_with_every_parameter(made):
    study = _study(made)
    df = trials_frame(study)
    assert len(df) == N_TRIALS
    assert list(df.columns[: len(BASE_COLUMNS)]) == list(BASE_COLUMNS)
    for name in ("units_l0", "batchnorm", "learning_rate", "batch_size", "activation"):  # searched
        assert f"params_{name}" in df.columns
    for name in ("initializer", "dropout", "optimizer", "layers"):  # fixed in the study file
        assert (
            df[f"params_{name}"] == {"initializer": "he_normal", "dropout": 0.0, "optimizer": "adam", "layers": 1}[name]
        ).all()
    for t, row in zip(study.trials, df.itertuples(), strict=True):
        assert row.number == t.number and row.state == t.state.name
        assert row.value == pytest.approx(t.value)
        assert row.n_params == t.user_attrs["n_params"]
        assert row.reached_target == (row.stop_reason == "target")
        if row.reached_target:
            assert row.value == row.epochs_to_target
        else:
            assert pd.isna(row.epochs_to_target) and row.value > MAX_EPOCHS


def test_counts_and_epochs_vs_params_table(made):
    study = _study(made)
    df = trials_frame(study)
    c = counts(df)
    assert c["state"] == {"COMPLETE": N_TRIALS}
    assert sum(c["stop_reason"].values()) == N_TRIALS
    assert set(c["stop_reason"]) <= {"target", "max_epochs"}
    assert c["stop_reason"].get("target", 0) == int(df["reached_target"].sum())

    table = epochs_vs_params(df, MAX_EPOCHS)
    assert len(table) == N_TRIALS
    assert list(table["n_params"]) == sorted(table["n_params"])
    for r in table.itertuples():
        t = study.trials[r.number]
        units, bn = t.params["units_l0"], t.params["batchnorm"]
        # Dense(784 -> u) [+ BatchNorm: no bias, 4u weights] + Dense(u -> 10)
        expected = 784 * units + (4 * units if bn else units) + units * 10 + 10
        assert r.n_params == expected
        assert r.y == (r.epochs_to_target if r.reached else MAX_EPOCHS + 1)
        assert r.family == "dense"

    hist = optimization_history(df)
    assert list(hist["best"]) == list(pd.Series([t.value for t in study.trials]).cummin())


def test_artifacts_for_each_complete_trial(made):
    study = _study(made)
    storage = make_storage(made["url"])
    best_values = []
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        metas = {m.filename: m for m in get_all_artifact_meta(t, storage=storage)}
        n = f"trial-{t.number:04d}"
        assert {f"{n}-curves.png", f"{n}-history.json", f"{n}-history.csv"} <= set(metas), metas
        png = matplotlib.image.imread(made["art"] / metas[f"{n}-curves.png"].artifact_id)
        assert png.shape[0] > 100 and png.shape[1] > 100
        saved = json.loads((made["art"] / metas[f"{n}-history.json"].artifact_id).read_text())
        assert saved["history"] == t.system_attrs["history"] and saved["trial"] == t.number
        csv = pd.read_csv(made["art"] / metas[f"{n}-history.csv"].artifact_id)
        assert list(csv["epoch"]) == list(range(1, t.user_attrs["epochs"] + 1))
        # a model is saved exactly when the trial improved on every earlier trial
        improved = all(t.value < v for v in best_values)
        assert (f"{n}-model.keras" in metas) == improved, (t.number, t.value, best_values)
        best_values.append(t.value)
    assert "artifact not written" not in made["stderr"]


def test_tensorboard_run_per_trial(made):
    import tensorflow as tf

    runs = sorted(p.name for p in (made["tb"] / "rep").iterdir())
    assert runs == [f"trial-{i:04d}" for i in range(N_TRIALS)]
    tags = set()
    for f in (made["tb"] / "rep" / "trial-0000" / "train").glob("events.out.tfevents.*"):
        for raw in tf.data.TFRecordDataset(str(f)):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            tags |= {v.tag for v in event.summary.value}
    assert {"epoch_loss", "epoch_accuracy", "batch_loss"} <= tags
    assert list((made["tb"] / "rep" / "trial-0000" / "validation").glob("events.out.tfevents.*"))


def test_report_cli_writes_csv_summary_and_figures(made, tmp_path):
    out = tmp_path / "rep"
    proc = run_cli("report", "rep", "--storage", made["url"], "--out", str(out), "--artifact-dir", str(made["art"]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"trials.csv ({N_TRIALS} rows)" in proc.stdout
    df = pd.read_csv(out / "trials.csv")
    assert len(df) == N_TRIALS and list(df["number"]) == list(range(N_TRIALS))
    figures = sorted(out.glob("*.png"))
    assert len(figures) >= 3
    for f in figures:
        assert matplotlib.image.imread(f).shape[1] > 100
    summary = (out / "summary.md").read_text()
    best = _study(made).best_trial
    assert f"Trial {best.number}: value" in summary
    assert "| COMPLETE | 4 |" in summary
    acc = float(summary.split("Test-set accuracy: **")[1].split("**")[0])
    assert 0.3 < acc <= 1.0  # 10 classes: a trained model is far above chance


def test_report_with_pruned_failed_and_no_artifacts(made, tmp_path):
    """Pruned and failed trials get rows; a model artifact missing from the store is said, not fatal."""
    shutil.copy(made["root"] / "d.db", tmp_path / "d.db")
    study = optuna.load_study(study_name="rep", storage=f"sqlite:///{tmp_path / 'd.db'}")  # ask/tell: no heartbeat
    t = study.ask()
    t.report(3.5, step=0)
    study.tell(t, state=TrialState.PRUNED)
    t = study.ask()
    t.set_user_attr("stop_reason", "error")
    study.tell(t, state=TrialState.FAIL)
    with pytest.warns(
        ReportWarning, match=r"model artifact 'trial-\d{4}-model.keras' of trial \d is missing from the artifact store"
    ):
        done = write_report(study, tmp_path / "out", artifact_store=FileSystemArtifactStore(str(tmp_path / "empty")))
    assert done["rows"] == N_TRIALS + 2
    c = json.loads((tmp_path / "out" / "counts.json").read_text())
    assert c["state"] == {"COMPLETE": N_TRIALS, "FAIL": 1, "PRUNED": 1}
    assert c["stop_reason"]["error"] == 1 and c["stop_reason"]["none"] == 1
    assert done["test"][0] is None and "is missing from the artifact store" in done["test"][1]
    assert "Test-set accuracy: not available" in (tmp_path / "out" / "summary.md").read_text()
    hist = optimization_history(trials_frame(study))
    assert list(hist["state"]).count("PRUNED") == 1 and hist["value"].iloc[-1] == 3.5


def test_learning_curves_come_from_the_storage_in_either_place(made, tmp_path):
    """The report's curves need no artifact: the history is a trial system attribute (out of the
    dashboard's user attributes); a study of an earlier version holds it as a user attribute."""
    shutil.copy(made["root"] / "d.db", tmp_path / "d.db")
    study = optuna.load_study(study_name="rep", storage=f"sqlite:///{tmp_path / 'd.db'}")
    curves = best_curves(study, k=N_TRIALS)
    assert len(curves) == N_TRIALS
    for c in curves:
        t = study.trials[c["number"]]
        assert "history" not in t.user_attrs and c["history"] == t.system_attrs["history"]
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(c["history"])
        assert len(c["history"]["val_loss"]) == t.user_attrs["epochs"]
    old = {"loss": [0.9, 0.5], "accuracy": [0.6, 0.8], "val_loss": [0.8, 0.6], "val_accuracy": [0.65, 0.75]}
    t = study.ask()
    attrs = {"family": "dense", "epochs_to_target": 2, "reached_target": True, "stop_reason": "target", "epochs": 2}
    attrs |= {"n_params": 1000, "seconds": 1.0, "seconds_to_target": 0.8, "history": old}  # as an earlier version recorded
    for key, value in attrs.items():
        t.set_user_attr(key, value)
    study.tell(t, 0.5)  # cheaper than any trial of the study: the first curve
    first = best_curves(study)[0]
    assert first["number"] == t.number and first["history"] == old
    with warnings.catch_warnings(record=True) as seen:  # no artifact store: only the test accuracy is missing
        warnings.simplefilter("always")
        done = write_report(study, tmp_path / "out", artifact_store=FileSystemArtifactStore(str(tmp_path / "empty")))
    assert "best_curves.png" in [f.name for f in done["figures"]]
    assert [str(w.message) for w in seen if "best_curves.png" in str(w.message)] == []


def test_report_of_a_study_without_completed_trials(tmp_path):
    cfg = load_config(STUDIES / "quickstart.toml")
    open_study(cfg, make_storage(f"sqlite:///{tmp_path / 'e.db'}"), "empty")
    study = optuna.load_study(study_name="empty", storage=f"sqlite:///{tmp_path / 'e.db'}")
    t = study.ask()
    study.tell(t, state=TrialState.FAIL)
    done = write_report(study, tmp_path / "out")
    assert done["rows"] == 1 and len(done["figures"]) == 6 and done["test"] is None
    assert "No completed trial yet." in (tmp_path / "out" / "summary.md").read_text()
    assert study_info(study)["data"]["train_size"] == 12000


def test_report_bad_input_is_one_line(made, tmp_path):
    proc = run_cli("report", "nope", "--storage", made["url"], "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["hpo: error: no study named 'nope' in this storage; studies: rep"]
    assert not (tmp_path / "x").exists()
    proc = run_cli("report", "rep", "--storage", f"sqlite:///{tmp_path / 'typo.db'}", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("hpo: error: no SQLite file") and not (tmp_path / "typo.db").exists()


def test_study_note_names_dataset_objective_and_space(made):
    from optuna_dashboard import get_note

    study = _study(made)
    note = get_note(study)
    for text in (
        "## rep: epochs to",
        "fashion_mnist",
        "`val_accuracy`",
        f"target: **{TARGET:g}**",
        f"max_epochs: **{MAX_EPOCHS}**",
        "| units |",
        "step s is the cost after epoch s + 1",  # the dashboard's Step axis counts from 0
    ):
        assert text in note, text
    assert study.metric_names == ["epochs_to_target"]


def test_the_note_says_what_a_step_is_with_sub_epoch_checks():
    from hpo.note import study_note

    cfg = load_config(STUDIES / "quickstart.toml", ["objective.checks_per_epoch=4"])
    assert "step s is the cost after check s + 1 of 4 per epoch, i.e. after (s + 1) / 4 epochs" in study_note(cfg)


def test_failed_artifact_write_is_a_warning_not_a_lost_trial(tmp_path):
    from hpo.artifacts import ArtifactWarning, ArtifactWriter
    from hpo.data import prepare
    from hpo.objective import Objective

    cfg = load_config(
        STUDIES / "quickstart.toml",
        ["data.train_size=300", "objective.max_epochs=1", "space.dense.layers=1", "space.dense.units=16"],
    )
    (tmp_path / "not-a-folder").write_text("a file where the artifact folder should be")
    store = FileSystemArtifactStore(str(tmp_path / "not-a-folder"))
    study = open_study(cfg, make_storage(f"sqlite:///{tmp_path / 'w.db'}"), "w")
    objective = Objective(cfg, prepare(cfg.data), callbacks=(ArtifactWriter(store, cfg),))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study.optimize(objective, n_trials=1)
    assert study.trials[0].state == TrialState.COMPLETE
    messages = [str(w.message) for w in caught if issubclass(w.category, ArtifactWarning)]
    assert any(m.startswith("trial 0: learning-curve plot artifact not written") for m in messages), messages
    assert any(m.startswith("trial 0: model artifact not written") for m in messages), messages


def test_study_flag_errors_exit_2(tmp_path):
    proc = run_cli(
        "study", str(STUDIES / "quickstart.toml"), "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--tensorboard-batches"
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["hpo: error: --tensorboard-batches needs --tensorboard DIR"]
    (tmp_path / "file").write_text("")
    proc = run_cli(
        "study",
        str(STUDIES / "quickstart.toml"),
        "--storage",
        f"sqlite:///{tmp_path / 'x.db'}",
        "--artifact-dir",
        str(tmp_path / "file" / "a"),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("hpo: error: --artifact-dir: cannot create folder")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not Path(tmp_path / "x.db").exists()


def test_confirmation_table_and_answer_section(tmp_path):
    """Configurations with repeats become rows with their runs and median; the answer is marked."""
    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    from hpo.reporting import confirmation_table, summary_markdown

    cfg = load_config(STUDIES / "quickstart.toml")
    study = open_study(cfg, make_storage(f"sqlite:///{tmp_path / 'c.db'}"), "conf")
    runs = [(0, None, 3), (1, 0, 6), (2, 0, None), (3, None, 4), (4, 3, 5), (5, 3, 4), (6, None, None)]
    for number, repeat_of, epochs in runs:
        attrs = {
            "epochs_to_target": epochs,
            "reached_target": epochs is not None,
            "n_params": 100 + number,
            "epochs": epochs or 6,
        }
        attrs["stop_reason"] = "target" if epochs else "max_epochs"
        if repeat_of is not None:
            attrs["repeat_of"] = repeat_of
        study.add_trial(
            create_trial(
                value=epochs or 7.1, params={"u": 1 + (number > 2)}, distributions={"u": IntDistribution(1, 3)}, user_attrs=attrs
            )
        )
    info = study_info(study)
    table = confirmation_table(study, info)
    assert list(table["trial"]) == [3, 0]  # median 4 first, then median 6 (3, 6, not reached)
    assert list(table["median"]) == [4, 6] and list(table["answer"]) == [True, False]
    assert table["epochs"][1][:2] == [3, 6] and pd.isna(table["epochs"][1][2])
    md = summary_markdown(study, info, trials_frame(study), None)
    assert "4 epochs (median of 3 seeds: 4, 4, 5), trial 3 and its repeats [4, 5]" in md
    assert "| 0 | 3 | 3, 6, not reached | 6 | 100 |  |" in md
    assert "Confirmation cost 21 of the study's 34 training epochs (4 repeats, 0 dropped by the race)." in md
    df = trials_frame(study)
    assert list(df["repeat_of"].astype("object").where(df["repeat_of"].notna(), None)) == [None, 0, 0, None, 3, 3, None]


@pytest.mark.parametrize("monitor", ["val_accuracy", "accuracy"])
def test_trials_csv_has_the_timing_repeat_and_best_metric_columns(tmp_path, monitor):
    """``best_<monitor>``, ``seconds_per_epoch``, ``seconds_to_target``, ``compile_seconds`` and
    ``repeat_of`` go from the trials' user attributes to ``trials.csv``; a value that is no number
    is left empty with a warning."""
    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    cfg = load_config(STUDIES / "quickstart.toml", [f"objective.monitor={monitor}"])
    study = open_study(cfg, make_storage(f"sqlite:///{tmp_path / 'c.db'}"), "cols")
    timing = [  # best, seconds_per_epoch, seconds_to_target, compile_seconds, repeat_of
        (0.861, 0.8, 2.9, 1.3, None),
        (0.855, 0.75, 2.7, 1.2, 0),
        (0.702, None, None, None, None),  # one epoch only, target not reached
        ("high", 0.9, 3.0, 1.1, None),  # written by another program
    ]
    for number, (best, spe, stt, comp, rep) in enumerate(timing):
        attrs = {
            "epochs_to_target": 3 if stt else None,
            "reached_target": stt is not None,
            "stop_reason": "target" if stt else "max_epochs",
            f"best_{monitor}": best,
            "seconds_per_epoch": spe,
            "seconds_to_target": stt,
            "compile_seconds": comp,
            "seed": number,
            "best_other": 0.5,  # another metric's best is not a column
        }
        if rep is not None:
            attrs["repeat_of"] = rep
        study.add_trial(
            create_trial(value=3 if stt else 7.2, params={"u": 2}, distributions={"u": IntDistribution(1, 3)}, user_attrs=attrs)
        )
    with pytest.warns(ReportWarning, match=rf"1 stored values .* trial 3 best_{monitor}='high'"):
        df = trials_frame(study)
    assert list(df.columns) == [*BASE_COLUMNS, f"best_{monitor}", "params_u"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)  # no model artifact: no test accuracy
        write_report(study, tmp_path / "out")
    csv = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert list(csv.columns) == list(df.columns)
    for column, expected in [
        (f"best_{monitor}", [0.861, 0.855, 0.702, None]),
        ("seconds_per_epoch", [0.8, 0.75, None, 0.9]),
        ("seconds_to_target", [2.9, 2.7, None, 3.0]),
        ("compile_seconds", [1.3, 1.2, None, 1.1]),
        ("repeat_of", [None, 0, None, None]),
    ]:
        got = [None if pd.isna(v) else v for v in csv[column]]
        assert got == pytest.approx(expected) if None not in expected else got == expected, (column, got)
    assert "best_other" not in csv.columns


# --------------------------------------------------------------------------------------------
# A damaged artifact costs its own piece of the report, with a warning


def _copy_with_model(made: dict, tmp_path: Path) -> tuple[str, Path, optuna.trial.FrozenTrial, object]:
    """A copy of the study and its artifact folder; the best trial and its model's artifact meta."""
    shutil.copy(made["root"] / "d.db", tmp_path / "d.db")
    shutil.copytree(made["art"], tmp_path / "art")
    url = f"sqlite:///{tmp_path / 'd.db'}"
    best = optuna.load_study(study_name="rep", storage=url).best_trial
    meta = next(m for m in get_all_artifact_meta(best, storage=make_storage(url)) if m.filename.endswith(".keras"))
    return url, tmp_path / "art", best, meta


def test_truncated_model_artifact_costs_only_the_test_accuracy(made, tmp_path):
    """Keras said "File not found" about a cut ``.keras`` file and the report stopped before summary.md."""
    url, art, best, meta = _copy_with_model(made, tmp_path)
    model = art / meta.artifact_id
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    proc = run_cli("report", "rep", "--storage", url, "--out", str(tmp_path / "out"), "--artifact-dir", str(art))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        f"hpo: warning: model artifact '{meta.filename}' of trial {best.number} is unreadable "
        "(truncated or not a .keras file): no test accuracy"
    ]
    assert f"6 figures; test accuracy not available: model artifact '{meta.filename}'" in proc.stdout
    out = tmp_path / "out"
    assert len(pd.read_csv(out / "trials.csv")) == N_TRIALS
    assert len(list(out.glob("*.png"))) == 6
    summary = (out / "summary.md").read_text()
    assert f"Test-set accuracy: not available (model artifact '{meta.filename}' of trial {best.number} is unreadable" in summary
    assert f"Trial {best.number}: value" in summary


def _garbage(art: Path, meta, db: Path) -> str:
    model = art / meta.artifact_id
    model.write_bytes(bytes(range(256)) * (model.stat().st_size // 256 + 1))
    return "is unreadable (truncated or not a .keras file)"


def _empty(art: Path, meta, db: Path) -> str:
    (art / meta.artifact_id).write_bytes(b"")
    return "is unreadable (truncated or not a .keras file)"


def _missing(art: Path, meta, db: Path) -> str:
    (art / meta.artifact_id).unlink()
    return "is missing from the artifact store"


def _set_meta(db: Path, meta, **changes) -> None:
    """Change the artifact's record as any program writing to the storage could."""
    import sqlite3

    with sqlite3.connect(db) as c:
        c.execute(
            "UPDATE trial_system_attributes SET value_json = ? WHERE key = ?",
            (json.dumps(json.dumps({**dataclasses.asdict(meta), **changes})), f"artifacts:{meta.artifact_id}"),
        )


def _id_outside(art: Path, meta, db: Path) -> str:
    shutil.copy(art / meta.artifact_id, art.parent / "outside.keras")  # a real model, out of the store
    _set_meta(db, meta, artifact_id="../outside.keras")
    return "is unreadable: ValueError: Invalid artifact_id: ../outside.keras"


def _id_absolute(art: Path, meta, db: Path) -> str:
    _set_meta(db, meta, artifact_id=str(art / meta.artifact_id))
    return "is unreadable: ValueError: Invalid artifact_id"


@pytest.mark.parametrize("fault", [_garbage, _empty, _missing, _id_outside, _id_absolute], ids=lambda f: f.__name__[1:])
def test_a_damaged_model_artifact_costs_only_the_test_accuracy(fault, made, tmp_path):
    url, art, best, meta = _copy_with_model(made, tmp_path)
    said = fault(art, meta, tmp_path / "d.db")
    study = optuna.load_study(study_name="rep", storage=url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = write_report(study, tmp_path / "out", artifact_store=FileSystemArtifactStore(str(art)))
    messages = [str(w.message) for w in caught if issubclass(w.category, ReportWarning)]
    assert len(messages) == 1 and said in messages[0] and f"'{meta.filename}' of trial {best.number}" in messages[0], messages
    assert done["test"][0] is None and said in done["test"][1]
    assert done["rows"] == N_TRIALS and len(done["figures"]) == 6
    assert "Test-set accuracy: not available (model artifact" in (tmp_path / "out" / "summary.md").read_text()


def test_a_model_file_name_from_the_storage_never_chooses_where_it_is_written(made, tmp_path):
    """The model is downloaded under a fixed name: a stored file name with ``..`` or an absolute path writes nothing there."""
    url, art, best, meta = _copy_with_model(made, tmp_path)
    (tmp_path / "work").mkdir()
    # the model was downloaded into a fresh temporary folder under that name: this one led here
    climbing = os.path.relpath(tmp_path / "escaped.keras", Path(tempfile.gettempdir()) / "tmpXXXX")
    for filename in (climbing, str(tmp_path / "absolute.keras"), "\x1b[2Kname.keras"):
        _set_meta(tmp_path / "d.db", meta, filename=filename)
        study = optuna.load_study(study_name="rep", storage=url)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            done = write_report(study, tmp_path / "work" / "out", artifact_store=FileSystemArtifactStore(str(art)))
        assert not [w for w in caught if issubclass(w.category, ReportWarning)]
        assert 0.3 < done["test"][0] <= 1.0 and "\x1b" not in done["test"][1]
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith("d.db")} == {"art", "work"}


def test_a_figure_that_cannot_be_written_costs_only_itself(made, tmp_path):
    out = tmp_path / "out"
    (out / "importances.png").mkdir(parents=True)  # the figure's file cannot be written
    with pytest.warns(ReportWarning, match=r"figure importances.png not drawn: IsADirectoryError"):
        done = write_report(_study(made), out)
    assert [f.name for f in done["figures"]] == [
        "history.png",
        "epochs_vs_params.png",
        "pareto.png",
        "best_curves.png",
        "confirmation.png",
    ]
    summary = (out / "summary.md").read_text()
    assert "importances" not in summary and "![history](history.png)" in summary
    assert (out / "importances.png").is_dir() and len(pd.read_csv(out / "trials.csv")) == N_TRIALS


@pytest.mark.parametrize(("low", "high", "expected"), [(2_410, 25_450, "20,000"), (900, 2_000_000, "100,000")])
def test_parameter_axis_labels_are_plain_numbers(low, high, expected, tmp_path, monkeypatch):
    """Figures turn mathtext off (a "$" in a stored name is a dollar sign): the log scale's tick
    labels must not depend on it ("$\\mathdefault{10^{4}}$" shown raw)."""
    import matplotlib.figure
    import pandas as pd

    from hpo.reporting import plot_epochs_vs_params

    seen: list[str] = []
    save = matplotlib.figure.Figure.savefig

    def recording(fig, *args, **kwargs):
        save(fig, *args, **kwargs)  # draws the figure: the tick labels exist now
        seen.extend(t.get_text() for ax in fig.axes for m in (False, True) for t in ax.get_xticklabels(minor=m))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    table = pd.DataFrame(
        {"family": ["dense", "dense"], "reached": [True, False], "n_params": [low, high], "y": [2, 4], "number": [0, 1]}
    )
    plot_epochs_vs_params(table, 3, "$study$", tmp_path / "f.png")
    labels = [s for s in seen if s]
    assert labels and not any("$" in s or "mathdefault" in s for s in labels), labels
    assert expected in labels, labels


def test_importances_keep_optuna_s_small_study_warnings_off_the_terminal() -> None:
    """PED-ANOVA (Optuna's default evaluator) warns on studies whose trials all land in one
    quantile; the figure says how few trials it rests on instead."""
    import warnings as w

    from optuna.distributions import FloatDistribution

    from hpo.reporting import importances

    study = optuna.create_study()
    for x in (0.1, 0.5, 0.9):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": x, "y": x / 2},
                distributions={"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)},
                value=1.0,
            )
        )
    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        with w.catch_warnings():
            w.simplefilter("always")
            optuna.importance.get_param_importances(study)  # the warning this guards against exists
        seen = len(caught)
        found = importances(study)
    assert seen >= 1 and len(caught) == seen, [str(c.message) for c in caught]
    assert set(found) == {"x", "y"} and abs(sum(found.values()) - 1) < 1e-6


# --------------------------------------------------------------------------------------------
# Figures that answer the question: the Pareto front, stop reasons told apart, legends off the
# data, several studies compared

FRONT_ARGS = [
    "quickstart",
    "--no-progress",
    "--set",
    "data.train_size=600",
    "--set",
    "objective.max_epochs=3",
    "--set",
    "space.dense.layers=1",
    "--set",
    "space.dense.units=[16, 32, 64, 128]",
]


@pytest.fixture(scope="module")
def fronts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two studies in one SQLite file, run by the CLI: ``wide`` (8 searched trials and the repeats
    confirmation enqueues, target 0.70) and ``low`` (3 trials, target 0.65, no confirmation)."""
    root = tmp_path_factory.mktemp("fronts")
    url = f"sqlite:///{root / 'f.db'}"
    for name, extra in (
        ("wide", ["--n-trials", "8", "--set", "objective.target=0.70", "--set", "study.pruner=none"]),
        ("low", ["--n-trials", "3", "--set", "objective.target=0.65", "--set", "study.confirm_seeds=0"]),
    ):
        proc = run_cli("study", *FRONT_ARGS, "--study-name", name, *extra, "--storage", url, "--no-artifacts")
        assert proc.returncode == 0, proc.stderr[-2000:]
    return {"root": root, "url": url}


def _front_study(fronts: dict, name: str = "wide") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=make_storage(fronts["url"], mode="read"))


def test_pareto_table_is_the_non_dominated_set_of_the_configurations(fronts):
    """One row per configuration that reached the target (a trial and its repeats), its epochs the
    median over its runs; the fronts are what Optuna's own multi-objective ``best_trials`` finds."""
    import statistics

    from hpo.reporting import pareto_table

    study = _front_study(fronts)
    table = pareto_table(study, study_info(study)["confirm_seeds"])
    trials = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    groups: dict[int, list] = {}
    for t in trials:
        if t.user_attrs.get("stop_reason") != "dropped":
            groups.setdefault(t.user_attrs.get("repeat_of", t.number), []).append(t)
    expected = {}
    for root, runs in groups.items():
        epochs = [t.user_attrs["epochs_to_target"] for t in runs]
        median = statistics.median(math.inf if e is None else e for e in epochs)
        if math.isfinite(median):
            expected[root] = (median, runs[0].user_attrs["n_params"])
    assert len(expected) >= 3, "the study should give a front to test"
    assert set(table["trial"]) == set(expected)
    for r in table.itertuples():
        assert (r.epochs, r.n_params) == expected[r.trial]
        assert r.seconds_to_target > 0 and r.runs == len(groups[r.trial])
    assert (table["runs"] > 1).any(), "confirmation should have repeated a configuration"

    for x, column in (("n_params", "front_params"), ("seconds_to_target", "front_seconds")):
        oracle = optuna.create_study(directions=["minimize", "minimize"])
        for r in table.itertuples():
            oracle.add_trial(optuna.trial.create_trial(values=[r.epochs, getattr(r, x)], user_attrs={"configuration": r.trial}))
        front = {t.user_attrs["configuration"] for t in oracle.best_trials}
        assert set(table.loc[table[column], "trial"]) == front, column


def test_report_lists_the_front_and_draws_the_pareto_figure(fronts, tmp_path):
    from hpo.reporting import pareto_table

    out = tmp_path / "r"
    proc = run_cli("report", "wide", "--storage", fronts["url"], "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "6 figures" in proc.stdout
    study = _front_study(fronts)
    table = pareto_table(study, study_info(study)["confirm_seeds"])
    summary = (out / "summary.md").read_text()
    section = summary.split("## Pareto front")[1].split("\n## ")[0]
    listed = [
        int(line.split("|")[1]) for line in section.splitlines() if line.startswith("| ") and not line.startswith("| trial")
    ]
    assert sorted(listed) == sorted(table.loc[table["front_params"] | table["front_seconds"], "trial"])
    assert f"of the {len(table)} configurations that reached the target are non-dominated" in section
    assert "![pareto](pareto.png)" in summary
    image = _image(out / "pareto.png")
    assert image.shape[1] >= 1000 and image.std() > 0.05  # two panels, drawn
    csv = pd.read_csv(out / "trials.csv")
    reached = csv[csv["reached_target"]]
    for column in ("best_val_accuracy", "seconds_to_target"):
        assert reached[column].notna().all() and (reached[column] > 0).all(), column
    split = csv[csv["epochs"] > 1]  # one epoch alone cannot be split into compilation and a steady epoch
    for column in ("seconds_per_epoch", "compile_seconds"):
        assert split[column].notna().all() and (split[column] >= 0).all() and csv[column].notna().any(), column
    assert set(csv["repeat_of"].dropna().astype(int)) <= set(csv["number"])


def _image(path: Path):
    return matplotlib.image.imread(path)


def test_report_of_several_studies_is_one_comparison(fronts, tmp_path):
    db = Path(fronts["url"].removeprefix("sqlite:///"))
    before = db.read_bytes()
    out = tmp_path / "cmp"
    proc = run_cli("report", "wide", "low", "--storage", fronts["url"], "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == f"{out}: summary.md and answers.csv (2 studies), 2 figures"
    assert sorted(p.name for p in out.iterdir()) == ["answers.csv", "history.png", "pareto.png", "summary.md"]
    summary = (out / "summary.md").read_text()
    table = [line for line in summary.split("\n\n")[2].splitlines() if line.startswith("| ")]
    assert len(table) == 3 and table[1].startswith("| wide | dense | val_accuracy \\>= 0.7 within 3 epochs")
    assert table[2].startswith("| low | dense | val_accuracy \\>= 0.65 within 3 epochs")
    assert "## Pareto front of `wide`" in summary and "## Pareto front of `low`" in summary
    answers = pd.read_csv(out / "answers.csv")
    assert list(answers["study"]) == ["wide", "low"] and list(answers["trials"]) == [
        len(_front_study(fronts, n).trials) for n in ("wide", "low")
    ]
    wide = _front_study(fronts)
    assert answers["answer_epochs"][0] == wide.user_attrs["answer"]["median"]
    assert pd.isna(answers["answer_epochs"][1])  # no confirmation: no confirmed answer
    for f in ("history.png", "pareto.png"):
        assert _image(out / f).std() > 0.05
    assert db.read_bytes() == before  # reading never writes


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["wide", "nope"], "hpo: error: no study named 'nope' in this storage; studies: low, wide"),
        (["wide", "low", "wide"], "hpo: error: study 'wide' is named twice: compare different studies"),
        (["wide", "low", "--top", "2"], "hpo: error: --top applies to the report of one study, not to a comparison of 2"),
    ],
)
def test_a_bad_comparison_is_one_line_and_writes_nothing(fronts, tmp_path, args, said):
    db = Path(fronts["url"].removeprefix("sqlite:///"))
    before = db.read_bytes()
    proc = run_cli("report", *args, "--storage", fronts["url"], "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [said]
    assert not (tmp_path / "cmp").exists() and db.read_bytes() == before


def _recorded_figures(monkeypatch) -> list:
    """Figures as they are saved, kept for inspection, each with ``layout``: where its points,
    legends and axes are on the saved image (display coordinates, final once it is drawn)."""
    import matplotlib.figure

    seen: list = []
    save = matplotlib.figure.Figure.savefig

    def recording(fig, *args, **kwargs):
        save(fig, *args, **kwargs)
        renderer = fig.canvas.get_renderer()
        fig.layout = {
            "points": _data_points(fig),
            "legends": [legend.get_window_extent(renderer) for legend in _legends(fig)],
            "axes": [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible() and ax.axison],
        }
        seen.append(fig)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    return seen


def _data_points(fig) -> list[tuple[float, float]]:
    """Display coordinates of every plotted point: scatter offsets and line vertices."""
    import numpy as np

    points = []
    for ax in fig.axes:
        for c in ax.collections:
            offsets = np.asarray(c.get_offsets(), dtype=float)
            if offsets.size:
                points += [tuple(p) for p in c.get_offset_transform().transform(offsets)]
        for line in ax.lines:
            xy = np.asarray(line.get_xydata(), dtype=float)
            if len(xy) and line.get_transform().is_affine is not None:
                points += [tuple(p) for p in line.get_transform().transform(xy)]
    return [p for p in points if all(map(math.isfinite, p))]


def _legends(fig) -> list:
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def test_legends_cover_no_data(fronts, tmp_path, monkeypatch):
    """In every figure of a report and a comparison, no plotted point lies under a legend, and
    no legend lies over an axes' plotting area."""
    figures = _recorded_figures(monkeypatch)
    study = _front_study(fronts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        write_report(study, tmp_path / "one")
        from hpo.reporting import write_comparison

        write_comparison([study, _front_study(fronts, "low")], tmp_path / "two")
    assert len(figures) == 8
    checked = 0
    for fig in figures:
        points = fig.layout["points"]
        assert points or not fig.layout["legends"], fig.axes[0].get_title()
        for box in fig.layout["legends"]:
            under = [p for p in points if box.x0 <= p[0] <= box.x1 and box.y0 <= p[1] <= box.y1]
            assert not under, (fig.axes[0].get_title(), box, under[:3])
            for axes in fig.layout["axes"]:
                assert not box.overlaps(axes), (fig.axes[0].get_title(), box, axes)
            checked += 1
    assert checked >= 6


def test_stop_reasons_are_told_apart_and_best_curves_share_scales(fronts, tmp_path, monkeypatch):
    """Pruned, capped, out-of-epochs, dropped and diverged trials (added to a copy of a real study)
    each get their own legend entry and marker in ``epochs_vs_params.png``; each best curve that
    reached the target has a marker there; the panels of ``best_curves.png`` share their scales."""
    import numpy as np

    from hpo.reporting import STOP_CATEGORIES

    shutil.copy(Path(fronts["url"].removeprefix("sqlite:///")), tmp_path / "f.db")
    study = optuna.load_study(study_name="wide", storage=f"sqlite:///{tmp_path / 'f.db'}")
    template = next(t for t in study.trials if t.user_attrs.get("stop_reason") == "target")
    for reason in ("pruned", "capped", "dropped", "max_epochs", "nan"):
        attrs = {**template.user_attrs, "stop_reason": reason, "epochs_to_target": None, "reached_target": False}
        attrs.pop("repeat_of", None)
        state = TrialState.COMPLETE if reason in ("max_epochs", "nan") else TrialState.PRUNED
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=4.2 if state == TrialState.COMPLETE else None,
                intermediate_values={0: 4.3},
                params=template.params,
                distributions=template.distributions,
                user_attrs=attrs,
            )
        )
    figures = _recorded_figures(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        write_report(study, tmp_path / "out")
    by_title = {fig.axes[0].get_title(): fig for fig in figures}
    scatter = next(f for t, f in by_title.items() if t.endswith("vs. model size"))
    handles, labels = scatter.axes[0].get_legend_handles_labels()
    assert sorted(labels) == sorted(label for label, _, _ in STOP_CATEGORIES.values())
    markers = {tuple(np.round(h.get_paths()[0].vertices, 3).ravel()) for h in handles}
    assert len(markers) == len(handles)  # one marker shape per stop reason

    curves = next(f for f in figures if len(f.axes) >= 4 and f.legends)
    panels = [ax for ax in curves.axes if ax.get_ylabel() == "loss"]
    twins = [ax for ax in curves.axes if ax.get_ylabel() == "val_accuracy"]
    assert len(panels) == len(twins) >= 2
    assert len({ax.get_ylim() for ax in panels}) == 1 and len({ax.get_ylim() for ax in twins}) == 1
    target = study_info(study)["target"]
    for panel in panels:
        twin = next(ax for ax in twins if ax.bbox.bounds == panel.bbox.bounds)
        stars = [line for line in twin.lines if line.get_label() == "target reached"]
        monitored = next(line for line in twin.lines if line.get_label() == "val_accuracy")
        trial = study.trials[int(panel.get_title().split(":")[0].split()[1])]  # "trial N: ..."
        ett = trial.user_attrs["epochs_to_target"]
        if ett is None:
            assert not stars
            continue
        (x,), (y,) = stars[0].get_data()
        assert x == ett and y >= target
        assert y == dict(zip(*monitored.get_data(), strict=True))[x]
