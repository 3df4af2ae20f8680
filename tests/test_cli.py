"""``python -m hpo.run`` as a real subprocess on real Fashion-MNIST slices and SQLite files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import STUDIES, run_cli

DENSE = "studies/fashion_dense.toml"
SMALL = [
    "--set",
    "data.train_size=1000",
    "--set",
    "objective.max_epochs=2",
    "--set",
    "objective.target=0.7",
    "--no-progress",
    "--no-artifacts",
]
ATTRS = {
    "family",
    "epochs_to_target",
    "reached_target",
    "stop_reason",
    "n_params",
    "seconds",
    "seconds_per_epoch",
    "best_val_accuracy",
}


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
        ua, history = t.user_attrs, t.system_attrs["history"]  # out of the dashboard's user attributes
        assert "history" not in ua
        assert ua["family"] == "dense" and ua["n_params"] > 0 and ua["seconds"] > 0
        assert len(history["val_accuracy"]) == ua["epochs"] == len(t.intermediate_values)
        assert ua["best_val_accuracy"] == pytest.approx(max(history["val_accuracy"]), abs=1e-5)
        if ua["reached_target"]:
            assert ua["stop_reason"] == "target" and t.value == ua["epochs_to_target"] <= 2
        else:
            assert ua["epochs_to_target"] is None
            assert t.value == pytest.approx(2 + 1 + 0.7 - ua["best_val_accuracy"], abs=1e-4)
            assert t.value > 2
    assert "3 trials asked, 3 run in" in proc.stdout and "best: trial" in proc.stdout


def test_rerun_adds_trials_and_list_shows_them(small_study) -> None:
    url, _ = small_study
    proc = run_cli("study", DENSE, "--storage", url, "--n-trials", "1", *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert len(optuna.load_study(study_name="fashion_dense", storage=url).trials) == 4
    listing = run_cli("list", "--storage", url)
    assert listing.returncode == 0
    assert "fashion_dense" in listing.stdout and " 4 " in listing.stdout


def test_help_at_every_level() -> None:
    for command in ([], ["study"], ["list"], ["report"], ["dashboard"], ["proxy"]):
        proc = run_cli(*command, "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout
        assert "--debug" in proc.stdout, command  # before or after the command
    assert "--set KEY=VALUE" in run_cli("study", "--help").stdout
    assert run_cli().returncode == 2


def test_worker_recycles_itself_and_keeps_the_study_going(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'recycle.db'}"
    tiny = ["studies/tiny.toml", "--storage", url, "--no-progress", "--no-artifacts", "--set", "study.recycle_after=2"]
    proc = run_cli("study", *tiny, "--n-trials", "3", "--set", "study.seed=5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("worker recycled after 2 trials") == 1, proc.stdout
    assert "1 trials to go" in proc.stdout
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert len({t.user_attrs["worker"] for t in trials}) == 1  # the same PID: the process replaced itself
    # the fresh process seeded its sampler past the trials already held: no draw repeated
    rates = [t.params["learning_rate"] for t in trials]
    assert len(set(rates)) == 3, rates
    again = run_cli("study", *tiny, "--n-trials", "2", "--set", "study.seed=5")  # a re-run of the same command
    assert again.returncode == 0, again.stderr
    rates_after = [t.params["learning_rate"] for t in optuna.load_study(study_name="tiny", storage=url).trials]
    assert len(set(rates_after)) == 5, rates_after


def test_a_log_file_gets_one_line_per_trial_and_verbose_adds_optuna_s(tmp_path: Path) -> None:
    """Written to a pipe: no bar redraws, no parameters in the per-trial lines; ``--verbose``
    brings Optuna's lines (every parameter) back."""
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    out = run_cli("study", str(STUDIES / "tiny.toml"), "--storage", url, "--n-trials", "2", "--no-artifacts")
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("trial ")]
    assert [line.split(":")[0] for line in lines] == ["trial 0", "trial 1"], out.stdout
    assert all("not reached in 2 epochs (best val_accuracy 0." in line and line.endswith(" s") for line in lines), lines
    assert "\r" not in text and "finished with value" not in text and "units_l0" not in "".join(lines)
    assert "A new study created" not in text  # Optuna's line; the banner names the study
    assert re.search(r"^2 trials asked, 2 run in [0-9.]+ s\nstudy 'tiny' holds 2: ", out.stdout, re.M), out.stdout
    verbose = run_cli("study", str(STUDIES / "tiny.toml"), "--storage", url, "--n-trials", "1", "--no-artifacts", "--verbose")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "Trial 2 finished with value" in verbose.stderr and "units_l0" in verbose.stderr
    assert "trial 2: not reached in 2 epochs" in verbose.stdout
    assert re.search(r"^1 trial asked, 1 run in ", verbose.stdout, re.M), verbose.stdout
    new = run_cli("study", str(STUDIES / "tiny.toml"), "--storage", url, "--n-trials", "0", "--study-name", "other", "--verbose")
    assert new.returncode == 0 and "A new study created in RDB with name: other" in new.stderr, new.stderr[-3000:]
