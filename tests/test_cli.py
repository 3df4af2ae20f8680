"""``python -m hpo.run`` as a real subprocess on real Fashion-MNIST slices and SQLite files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import run_cli

DENSE = "studies/fashion_dense.toml"
SMALL = ["--set", "data.train_size=1000", "--set", "objective.max_epochs=2", "--set", "objective.target=0.7", "--no-progress", "--no-artifacts"]
ATTRS = {
    "family",
    "epochs_to_target",
    "reached_target",
    "stop_reason",
    "n_params",
    "seconds",
    "seconds_per_epoch",
    "history",
    "best_val_accuracy",
}


def snapshot(url: str, name: str) -> list[tuple]:
    study = optuna.load_study(study_name=name, storage=url)
    return [(t.number, t.state, t.value, dict(t.params), dict(t.user_attrs)) for t in study.trials]


@pytest.fixture(scope="module")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, subprocess.CompletedProcess]:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'a.db'}"
    proc = run_cli("study", DENSE, "--storage", url, "--n-trials", "3", "--seed", "1", *SMALL)
    return url, proc


def test_study_records_every_trial(small_study) -> None:
    url, proc = small_study
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="fashion_dense", storage=url)
    trials = study.trials
    assert [t.number for t in trials] == [0, 1, 2]
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.metric_names == ["epochs_to_target"]
    for t in trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert ATTRS <= set(t.user_attrs), set(t.user_attrs)
        ua = t.user_attrs
        assert ua["family"] == "dense" and ua["n_params"] > 0 and ua["seconds"] > 0
        assert len(ua["history"]["val_accuracy"]) == ua["epochs"] == len(t.intermediate_values)
        assert ua["best_val_accuracy"] == pytest.approx(max(ua["history"]["val_accuracy"]), abs=1e-5)
        if ua["reached_target"]:
            assert ua["stop_reason"] == "target" and t.value == ua["epochs_to_target"] <= 2
        else:
            assert ua["epochs_to_target"] is None
            assert t.value == pytest.approx(2 + 1 + 0.7 - ua["best_val_accuracy"], abs=1e-4)
            assert t.value > 2
    assert "trials in" in proc.stdout and "best: trial" in proc.stdout


def test_rerun_adds_trials_and_list_shows_them(small_study) -> None:
    url, _ = small_study
    proc = run_cli("study", DENSE, "--storage", url, "--n-trials", "1", *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert len(optuna.load_study(study_name="fashion_dense", storage=url).trials) == 4
    listing = run_cli("list", "--storage", url)
    assert listing.returncode == 0
    assert "fashion_dense" in listing.stdout and " 4 " in listing.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "objective.target=1.5"], "objective.target"),
        (["--set", "objective.max_epochs=5"], "objective.max_epochs"),  # resume with another objective
        (["--set", "objective.monitor=accuracy"], "objective.monitor"),
        (["--set", "space.dense.activation=['relu', 'tanh']"], "activation"),  # categorical choices changed
        (["--set", "space.dense.units=[]"], "space.dense.units"),
        (["--set", "data.data_dir=/nonexistent/fm"], "data.data_dir"),
        (["--n-trials", "-1"], "--n-trials"),
    ],
)
def test_bad_input_exits_2_and_leaves_the_study_unchanged(small_study, args: list[str], needle: str) -> None:
    url, _ = small_study
    before = snapshot(url, "fashion_dense")
    proc = run_cli("study", DENSE, "--storage", url, "--n-trials", "1", *SMALL, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr
    assert snapshot(url, "fashion_dense") == before


def test_missing_study_file(tmp_path: Path) -> None:
    proc = run_cli("study", str(tmp_path / "none.toml"), "--storage", f"sqlite:///{tmp_path / 'x.db'}")
    assert proc.returncode == 2
    assert "none.toml: study file not found" in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_help_at_every_level() -> None:
    for args in (["--help"], ["study", "--help"], ["list", "--help"]):
        proc = run_cli(*args)
        assert proc.returncode == 0 and "usage:" in proc.stdout
    assert "--set KEY=VALUE" in run_cli("study", "--help").stdout
    assert run_cli().returncode == 2
