"""hpo from Python: the README's example, run as a user's script, returns to its caller and
leaves the study, its artifacts and a report that other folders find."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import hpo
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- the example below is run by tests/test_api.py -->\n```python\n(.*?)```", text, re.S)
    assert found, "README: the Python example is missing"
    return found.group(1)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The README's example as a script, in a folder of its own (the user's project)."""
    home = tmp_path_factory.mktemp("project")
    (home / "studies").mkdir()
    shutil.copy(REPO / "studies" / "fashion_dense.toml", home / "studies")
    script = home / "example.py"
    script.write_text(readme_example() + 'print("the caller goes on")\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "HPO_STORAGE"}
    env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(script)], cwd=home, env=env, capture_output=True, text=True, timeout=1200)
    return home, proc


def test_optimize_returns_to_the_caller_with_the_trials_and_their_artifacts(example) -> None:
    home, proc = example
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "optimize returned: " in proc.stdout and proc.stdout.rstrip().endswith("the caller goes on")
    assert proc.stdout.count("worker recycled after 3 trials") == 2  # 7 trials: 3 + 3 + 1, in child processes
    assert proc.stdout.count("study 'from_python' in ") == 1  # the banner once
    assert "7 trials asked, " in proc.stdout and " in 3 processes" in proc.stdout  # one account
    study = optuna.load_study(study_name="from_python", storage=f"sqlite:///{home / 'studies' / 'hpo.db'}")
    searched = [t for t in study.trials if t.user_attrs.get("repeat_of") is None]
    assert len(searched) == 7 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    artifacts = home / "studies" / "artifacts"  # beside the SQLite file
    assert study.user_attrs["hpo"]["artifact_dir"] == str(artifacts)
    for t in study.trials:
        ids = [k.split(":", 1)[1] for k in t.system_attrs if k.startswith("artifacts:")]
        assert len(ids) >= 3 and all((artifacts / i).is_file() for i in ids), t.number
    summary = (home / "reports" / "from_python" / "summary.md").read_text(encoding="utf-8")
    assert "Test-set accuracy: **0." in summary, summary


def test_report_from_another_folder_finds_the_artifacts_the_study_records(example, tmp_path: Path) -> None:
    home, proc = example
    assert proc.returncode == 0
    url = f"sqlite:///{home / 'studies' / 'hpo.db'}"
    out = run_cli("report", "from_python", "--storage", url, "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "test accuracy 0." in out.stdout
    assert "Test-set accuracy: **0." in (tmp_path / "r" / "summary.md").read_text(encoding="utf-8")
    # moved away, the recorded folder is missing: one line naming it and --artifact-dir, the report still written
    moved = home / "moved-artifacts"
    (home / "studies" / "artifacts").rename(moved)
    try:
        out = run_cli("report", "from_python", "--storage", url, "--out", str(tmp_path / "r2"), cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        warning = [line for line in out.stderr.splitlines() if line.startswith("hpo: warning:")]
        assert len(warning) == 1 and str(home / "studies" / "artifacts") in warning[0] and "--artifact-dir" in warning[0]
        out = run_cli("report", "from_python", "--storage", url, "--out", str(tmp_path / "r3"), "--artifact-dir", str(moved))
        assert "test accuracy 0." in out.stdout
        # a study run refuses to scatter its artifacts over a new folder
        same = ("--set", "objective.max_epochs=2", "--set", "data.train_size=2000", "--study-name", "from_python")
        run = run_cli("study", str(home / "studies" / "fashion_dense.toml"), "--storage", url, *same, "--n-trials", "1")
        assert run.returncode == 2 and "keeps its artifacts in" in run.stderr and "--artifact-dir" in run.stderr
    finally:
        moved.rename(home / "studies" / "artifacts")


def test_load_config_takes_a_dict_and_derives_validated_copies() -> None:
    cfg = hpo.load_config({"study": {"name": "d", "n_trials": 3}, "objective": {"target": 0.8}})
    assert (cfg.study.name, cfg.study.n_trials, cfg.objective.target) == ("d", 3, 0.8)
    changed = cfg.with_overrides("objective.target=0.9", "study.n_trials=5")
    assert (changed.objective.target, changed.study.n_trials, cfg.objective.target) == (0.9, 5, 0.8)
    with pytest.raises(hpo.ConfigError, match=r"objective.target"):
        cfg.with_overrides("objective.target=2")
    with pytest.raises(hpo.ConfigError, match=r"study.pruner_options.nope"):
        hpo.load_config({"study": {"pruner_options": {"nope": 1}}})


def test_a_config_changed_with_dataclasses_replace_is_taken_as_given() -> None:
    """``optimize(cfg)`` loads ``cfg`` again: a copy made with ``dataclasses.replace`` must not
    fall back to the study file's values (its enqueued configurations came back before)."""
    cfg = hpo.load_config("fashion_dense")
    assert cfg.study.enqueue, "the shipped main job warm-starts"
    cold = dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, enqueue=(), n_trials=4))
    loaded = hpo.load_config(cold)
    assert (loaded.study.enqueue, loaded.study.n_trials) == ((), 4)
    assert hpo.load_config(cold, ["study.seed=7"]).study.seed == 7  # overrides still apply


INTERRUPTED_SCRIPT = """
import sys, hpo
cfg = hpo.load_config(sys.argv[1], ["objective.max_epochs=300", "objective.target=0.999", "study.recycle_after=50"])
try:
    hpo.optimize(cfg, storage=sys.argv[2], n_trials=20, artifacts=False, progress=False)
except KeyboardInterrupt:
    print("the caller caught KeyboardInterrupt")
"""


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_ctrl_c_in_the_caller_stops_its_workers_as_the_command_does(tmp_path: Path, inherited: str) -> None:
    """SIGINT to the calling process only (a notebook's interrupt): its worker is stopped the
    same way, the running trial is stored as FAIL and re-queued, and the caller gets
    KeyboardInterrupt and goes on -- also when the caller inherited SIGINT as ignored (started in
    the background by a shell), as the command does."""
    import signal

    def start() -> None:
        if inherited == "ignored":
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    from tests.conftest import STUDIES, cli_env, wait_for

    url = f"sqlite:///{tmp_path / 'i.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_SCRIPT, str(STUDIES / "tiny.toml"), url],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=start,
    )

    def running_with_a_report():
        try:
            trials = optuna.load_study(study_name="tiny", storage=url).trials
        except KeyError:
            return None
        return next((t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values), None)

    try:
        trial = wait_for(running_with_a_report, 300, "a running trial with a report")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert "the caller caught KeyboardInterrupt" in stdout, stdout[-2000:]
    assert "stored as FAIL and re-queued" in stdout + stderr
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # the trial seen running (300 epochs, tens of seconds), or on a loaded machine one after it:
    # 20 trials outlast the signal, in one worker process that is not recycled before it lands
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0] >= trial.number, (failed, trial.number)
    assert [t.system_attrs.get("failed_trial") for t in trials if t.state == TrialState.WAITING] == failed
