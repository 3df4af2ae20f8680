"""Confirmation, capping and warm start through the CLI, on a real Fashion-MNIST slice."""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest

from tests.conftest import run_cli

STUDY = """
[study]
name = "confirm"
sampler = "random"
pruner = "none"
seed = 1
n_trials = 4
enqueue = [{layers = 1, units_l0 = 256, learning_rate = 0.003, batch_size = 32}]

[data]
dataset = "fashion_mnist"
train_size = 2000
validation_fraction = 0.02

[objective]
target = 0.8
max_epochs = 8

[space.dense]
layers = [1, 2]
units = [32, 256]
activation = "relu"
initializer = "he_normal"
batchnorm = true
learning_rate = { low = 1e-5, high = 3e-3, log = true }
optimizer = "adam"
batch_size = [32, 256]
"""
# The enqueued configuration reaches 0.8 in 3-7 epochs; learning rates near 1e-5 do not within 8.
WARM = {"layers": 1, "units_l0": 256, "learning_rate": 0.003, "batch_size": 32}
pytestmark = pytest.mark.slow


def run_study(tmp_path: Path, *extra: str) -> tuple[str, optuna.Study]:
    (tmp_path / "study.toml").write_text(STUDY)
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = run_cli("study", str(tmp_path / "study.toml"), "--storage", url, "--no-artifacts", "--no-progress", *extra)
    assert proc.returncode == 0, proc.stderr
    name = next((e.split("=", 1)[1] for e in extra if e.startswith("study.name=")), "confirm")
    return proc.stdout, optuna.load_study(study_name=name, storage=url)


def test_warm_start_confirmation_and_capping_in_one_study(tmp_path: Path) -> None:
    out, study = run_study(tmp_path)
    trials = study.get_trials()
    first = trials[0]
    assert first.params == WARM and first.user_attrs["warm_start"] == 0
    assert first.user_attrs["reached_target"], "the warm start must reach the target for this test"
    # Its two repeats came next, each with its own seed, never pruned.
    repeats = [t for t in trials if t.user_attrs.get("repeat_of") is not None]
    assert [t.number for t in repeats] == [1, 2]
    assert all(t.params == WARM and t.user_attrs["repeat_of"] == 0 for t in repeats)
    assert len({t.user_attrs["seed"] for t in trials}) == len(trials)
    assert all(t.user_attrs["stop_reason"] in ("target", "max_epochs") for t in repeats)
    # 4 search trials (the warm start and 3 sampled) plus the repeats.
    originals = [t for t in trials if t.user_attrs.get("repeat_of") is None]
    assert len(originals) == 4
    # The answer: the warm start's median over its three runs.
    answer = study.user_attrs["answer"]
    runs = [t.user_attrs["epochs_to_target"] for t in (first, *repeats)]
    assert answer["trials"] == [0, 1, 2] and answer["epochs"] == runs
    assert answer["median"] == statistics.median(e if e is not None else float("inf") for e in runs)
    assert f"answer: {answer['median']:g} epochs (median of 3 seeds" in out
    # Slow learning rates are capped at ceil(median) + 1 epochs instead of running all 8.
    capped = [t for t in originals if t.user_attrs["stop_reason"] == "capped"]
    assert capped, [(t.number, t.user_attrs["stop_reason"]) for t in originals]
    for t in capped:
        assert t.state == optuna.trial.TrialState.PRUNED and not t.user_attrs["reached_target"]
        assert t.user_attrs["epochs"] < 8
    # Honest times on every trial that trained more than one epoch.
    for t in trials:
        ua = t.user_attrs
        if ua["epochs"] < 2:
            continue
        assert ua["compile_seconds"] >= 0 and ua["seconds_per_epoch"] > 0
        assert (ua["seconds_to_target"] is not None) == ua["reached_target"]
    from optuna_dashboard._note import get_note_from_system_attrs

    note = get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id), None)["body"]
    assert "### Answer" in note and f"{answer['median']:g} epochs (median of 3 seeds" in note
    listing = run_cli("list", "--storage", f"sqlite:///{tmp_path / 'hpo.db'}")
    assert f"{answer['median']:g} epochs (median of 3 seeds" in listing.stdout


def test_confirmation_and_capping_off_behave_as_before_and_confirm_adds_the_runs(tmp_path: Path) -> None:
    out, study = run_study(
        tmp_path, "--n-trials", "3", "--set", "study.confirm_seeds=0", "--set", "objective.cap=false", "--set", "study.name=off"
    )
    trials = study.get_trials()
    assert len(trials) == 3 and "answer" not in study.user_attrs and "answer:" not in out
    assert all(t.user_attrs.get("repeat_of") is None for t in trials)
    assert all(t.user_attrs["stop_reason"] in ("target", "max_epochs") for t in trials)  # no pruner, no cap
    assert any(t.user_attrs["stop_reason"] == "max_epochs" for t in trials), "a slow trial must run all 8 epochs"
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = run_cli("confirm", "off", "--top", "1", "--seeds", "2", "--storage", url, "--no-artifacts")
    assert proc.returncode == 0, proc.stderr
    trials = optuna.load_study(study_name="off", storage=url).get_trials()
    added = trials[3:]
    assert [t.user_attrs.get("repeat_of") for t in added] == [0, 0]
    assert all(t.params == WARM and t.user_attrs["race"] is False for t in added)
    assert "confirming trials 0 of 'off': 2 more runs each" in proc.stdout
    assert "answer: " in proc.stdout and "(median of 3 seeds" in proc.stdout
