"""The search benchmark's own rules: the input every tool trains on reshuffles at every epoch
(Keras' seeded array fit does not), and how a peer's epochs to an answer as good as hpo's are read."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import bench_search  # noqa: E402
import bench_shuffle  # noqa: E402


def test_the_benchmark_pipeline_reshuffles_every_epoch_where_a_seeded_array_fit_does_not() -> None:
    import keras

    keras.utils.set_random_seed(3)
    n = 40
    split = SimpleNamespace(x_train=np.arange(n, dtype="float32").reshape(n, 1), y_train=np.arange(n, dtype="int64"))
    dataset = bench_search.training_data(split, 8, seed=5)
    epochs = [[int(v) for batch in dataset for v in batch[1].numpy()] for _ in range(3)]
    assert all(sorted(e) == list(range(n)) for e in epochs), "each epoch is one pass over every example"
    assert len({tuple(e) for e in epochs}) == 3, epochs  # a new order every epoch
    # Keras' own adapter, seeded: one order for every epoch (why the benchmark does not use it)
    repeated = bench_shuffle.same_permutation_every_epoch()
    assert repeated[0] == repeated[1] == repeated[2] and sorted(repeated[0]) != repeated[0], repeated


def _run(tool: str, seed: int, answer_median: float, checkpoints: list[tuple[int, float]], to_answer: float = 0):
    return {
        "tool": tool,
        "seed": seed,
        "answer_median": answer_median,
        "epochs_to_answer": to_answer,
        "checkpoints": [{"epochs": e, "median": m} for e, m in checkpoints],
    }


@pytest.mark.parametrize(
    ("checkpoints", "expected"),
    [
        ([(62, 5), (125, 3), (250, 3)], 125),  # the first checkpoint as good as hpo's answer
        ([(62, 3), (125, 5), (250, 5)], 62),  # held once, lost later: it was reached at 62
        ([(62, 2), (125, 2)], 62),  # better counts as good
        ([(62, 4), (125, 4), (250, 4)], bench_search.NEVER),
    ],
)
def test_epochs_to_an_answer_as_good_as_hpo_s(checkpoints, expected) -> None:
    hpo = _run("hpo", 0, 3, [(250, 3)], to_answer=192)
    assert bench_search.as_good_as(_run("random", 0, 9, checkpoints), hpo) == expected
    assert bench_search.as_good_as(hpo, hpo) == 192  # hpo: its own epochs to its answer
    assert bench_search.as_good_as(_run("random", 1, 3, checkpoints), None) is None  # no hpo run of that seed


def _cfg(name: str) -> dict:
    """A configuration of the dense space, one per name."""
    return {
        "layers": 1,
        "units_l0": 32 + ord(name),
        "activation": "relu",
        "initializer": "he_normal",
        "dropout": 0.0,
        "batchnorm": False,
        "learning_rate": 0.001,
        "optimizer": "adam",
        "batch_size": 64,
    }


def _peer(trials: list[tuple[str, list[float], int]], target: float = 0.85) -> dict:
    """A peer's record: trials ``(name, val_accuracy per epoch, first epoch)`` in training order."""
    return {
        "question": "q",
        "tool": "random",
        "seed": 0,
        "target": target,
        "fresh_seeds": [10000],
        "answer_median": 9,
        "epochs_to_answer": 0,
        "checkpoints": [{"epochs": 10, "median": 9}],
        "trials": [{"params": _cfg(n), "curve": c, "first_epoch": f, "epochs": len(c)} for n, c, f in trials],
    }


def test_a_peer_s_held_answers_are_replayed_epoch_by_epoch() -> None:
    run = _peer(
        [
            ("a", [0.70, 0.80], 0),  # best accuracy until a trial reaches the target
            ("b", [0.60, 0.70, 0.86], 0),  # 0.86 at its third epoch: reached in 3 (epoch 5 of the run)
            ("c", [0.84, 0.86], 0),  # reached in 2 (epoch 7)
            ("d", [0.85, 0.90], 0),  # reached in 1 (epoch 8), the best from then on
            ("e", [0.86], 1),  # a continued trial (Hyperband): reached at its epoch 2, not better than d
        ]
    )
    assert bench_search.held_answers(run) == [(1.0, _cfg("a")), (5.0, _cfg("b")), (7.0, _cfg("c")), (8.0, _cfg("d"))]
    # a tie in epochs goes to the higher val_accuracy then; an equal one keeps the earlier trial
    tie = _peer([("a", [0.86], 0), ("b", [0.87], 0), ("c", [0.87], 0)])
    assert bench_search.held_answers(tie) == [(1.0, _cfg("a")), (2.0, _cfg("b"))]


def test_epochs_to_an_answer_as_good_from_every_answer_held() -> None:
    run = _peer([("a", [0.70, 0.80], 0), ("b", [0.60, 0.70, 0.86], 0), ("c", [0.84, 0.86], 0)])
    hpo = _run("hpo", 0, 3, [(250, 3)], to_answer=192)

    def judged(**medians: float) -> dict[str, float]:
        return {bench_search.judged_key("q", _cfg(n), [10000]): m for n, m in medians.items()}

    assert bench_search.as_good_as(run, hpo, judged(a=11, b=3, c=2)) == 5  # b, held from epoch 5
    assert bench_search.as_good_as(run, hpo, judged(a=11, b=4, c=3)) == 7
    assert bench_search.as_good_as(run, hpo, judged(a=11, b=4, c=4)) == bench_search.NEVER
    # an answer held before the first good one is not judged: the checkpoints decide
    assert bench_search.as_good_as(run, hpo, judged(b=3)) == bench_search.NEVER  # checkpoint median 9
    run["checkpoints"] = [{"epochs": 10, "median": 3}]
    assert bench_search.as_good_as(run, hpo, judged(b=3)) == 10
    # hpo's own run, by the same rule against its final answer
    hpo_held = {**hpo, "question": "q", "fresh_seeds": [10000], "held": [[3, _cfg("a")], [40, _cfg("b")]]}
    assert bench_search.as_good_as(hpo_held, hpo_held, judged(a=3, b=3)) == 3
    assert bench_search.as_good_as(hpo_held, hpo_held, judged(a=4, b=3)) == 40


def test_epochs_from_which_every_answer_held_was_as_good() -> None:
    run = _peer([("a", [0.70, 0.80], 0), ("b", [0.60, 0.70, 0.86], 0), ("c", [0.84, 0.86], 0)])  # held from 1, 5, 7
    hpo = _run("hpo", 0, 3, [(250, 3)], to_answer=192)

    def judged(**medians: float) -> dict[str, float]:
        return {bench_search.judged_key("q", _cfg(n), [10000]): m for n, m in medians.items()}

    assert bench_search.kept_as_good(run, hpo, judged(a=11, b=3, c=2)) == 5
    assert bench_search.kept_as_good(run, hpo, judged(a=3, b=4, c=3)) == 7  # a was good, b was not
    assert bench_search.kept_as_good(run, hpo, judged(a=3, b=3, c=3)) == 1
    assert bench_search.kept_as_good(run, hpo, judged(c=4)) == bench_search.NEVER  # the last answer is worse
    # b not judged: the checkpoints decide (good from 10 on)
    run["checkpoints"] = [{"epochs": 5, "median": 9}, {"epochs": 10, "median": 3}]
    assert bench_search.kept_as_good(run, hpo, judged(c=3)) == 10


def test_an_hpo_run_s_answers_held_are_rebuilt_from_its_trials() -> None:
    a, b = _cfg("a"), _cfg("b")

    def trial(number, params, state, epochs, reached, repeat_of=None):
        return {
            "number": number, "state": state, "repeat_of": repeat_of, "stop_reason": "target" if reached else "pruned",
            "epochs": epochs, "epochs_to_target": epochs if reached else None, "params": params,
        }  # fmt: skip

    run = {
        "tool": "hpo",
        "max_epochs": 10,
        "trials": [
            trial(0, a, "COMPLETE", 4, True),  # the best single trial, from epoch 4
            trial(1, b, "COMPLETE", 3, True),  # better, from epoch 7
            trial(2, a, "COMPLETE", 4, True, repeat_of=0),
            trial(3, a, "COMPLETE", 5, True, repeat_of=0),  # a confirmed (4, 4, 5) at epoch 16
            trial(4, b, "COMPLETE", 3, True, repeat_of=1),
            trial(5, b, "COMPLETE", 4, True, repeat_of=1),  # b confirmed (3, 3, 4) at epoch 23
            trial(6, a, "PRUNED", 2, False),
        ],
    }
    assert bench_search.held_answers(run) == [(4.0, a), (7.0, b), (16.0, a), (23.0, b)]


def test_a_stopped_benchmark_says_so_in_one_line_and_keeps_the_finished_runs(tmp_path) -> None:
    """SIGTERM (as ``kill`` sends it) while hpo searches: exit 130, one line naming the run that
    starts over, the file of finished runs exactly as it was, and no run's process left training."""
    import signal
    import subprocess

    from tests.conftest import cli_env

    out = tmp_path / "runs.jsonl"
    earlier = {"question": "quick", "tool": "random", "seed": 7, "budget": 30, "train_size": 500, "answer_median": 4}
    out.write_text(json.dumps(earlier) + "\n")
    before = out.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "bench_search.py"), "--question", "quick", "--tools", "hpo",
         "--budget", "30", "--train-size", "500", "--fresh-seeds", "1", "--out", str(out)],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    left: dict[int, str] = {}
    try:
        for line in proc.stdout:  # the study has trials: hpo's signal handling is in place
            if "hpo trial 0:" in line:
                break
        else:
            pytest.fail(f"the benchmark ended before hpo's first trial: {proc.wait()} {proc.stderr.read()[-2000:]}")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        left = _processes_working_in(tmp_path)  # the run's own process (run_isolated) works there too
    finally:
        proc.kill()
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    err = proc.stderr.read()
    assert not left, left
    assert proc.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("bench_search: stopped during quick hpo seed 0; the finished runs are in "), last
    assert "Traceback" not in err, err[-2000:]
    assert out.read_bytes() == before


def _processes_working_in(folder: Path) -> dict[int, str]:
    """Processes whose working folder is ``folder``: their command lines."""
    found = {}
    for proc_dir in Path("/proc").iterdir():
        try:
            if proc_dir.name.isdigit() and Path(proc_dir, "cwd").resolve() == folder.resolve():
                found[int(proc_dir.name)] = Path(proc_dir, "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone, or not ours to read
    return found


def test_the_summary_lists_each_tool_s_seeds_in_order_whatever_order_the_runs_were_stored_in(capsys) -> None:
    """A re-run seed is appended after the others; the per-seed lists still line up by seed."""

    def run(tool: str, seed: int, median: int, to_answer: float) -> dict:
        common = {"question": "q", "target": 0.85, "train_size": 12000, "max_epochs": 10, "budget": 250}
        return {**_run(tool, seed, median, [(250, median)], to_answer), **common, "epochs": 250, "cpu_s": 100.0 + seed}

    runs = [run("hpo", 2, 4, 50), run("random", 0, 6, 245), run("hpo", 0, 3, 80), run("random", 2, 3, 45), run("hpo", 1, 2, 9)]
    tools = bench_search.summarise(runs)["q"]["tools"]
    hpo, random = tools["hpo"], tools["random"]
    assert hpo["seeds"] == [0, 1, 2]
    assert hpo["answer_medians"] == [3, 2, 4]
    assert hpo["epochs_to_as_good_as_hpo"] == [80, 9, 50]  # each against its own seed's answer
    assert (random["seeds"], random["epochs_to_as_good_as_hpo"]) == ([0, 2], [bench_search.NEVER, 250])
    assert "80, 9, 50 |" in capsys.readouterr().out


def test_the_summary_also_counts_the_epochs_hpo_took_to_hold_an_answer_as_good_as_each_peer_s(capsys) -> None:
    """When hpo's final answer beats every peer's, "as good as hpo's" says only "never"; the other
    way round counts from when every answer hpo held was as good as the peer's final one."""
    common = {"question": "q", "target": 0.85, "train_size": 12000, "max_epochs": 10, "budget": 300, "fresh_seeds": [10000]}
    hpo = {
        **_run("hpo", 2, 2, [(150, 3), (300, 2)], to_answer=226),
        **common,
        "epochs": 300,
        "cpu_s": 1.0,
        "held": [[3, _cfg("a")], [117, _cfg("b")], [226, _cfg("c")]],
    }
    slow = {**_run("random", 2, 7, [(150, 8), (300, 7)], to_answer=66), **common, "epochs": 300, "cpu_s": 1.0, "trials": []}
    close = {
        **_run("optuna_integration", 2, 3, [(150, 4), (300, 3)], to_answer=277),
        **common,
        "epochs": 300,
        "cpu_s": 1.0,
        "trials": [],
    }
    judged = {bench_search.judged_key("q", _cfg(n), [10000]): m for n, m in {"a": 4, "b": 3, "c": 2}.items()}
    ratio = bench_search.summarise([hpo, slow, close], judged)["q"]["ratios"][0]
    assert ratio["kept"] == {"hpo": 226, "peer": None, "peer_tool": None, "ratio_below": 226 / 300}
    # a (4) is already as good as random's 7; only b (3) on is as good as optuna-integration's 3
    assert ratio["as_good_as_peer"]["random"] == {"hpo": 3, "peer": 66, "ratio": 3 / 66}
    assert ratio["as_good_as_peer"]["optuna_integration"] == {"hpo": 117, "peer": 277, "ratio": 117 / 277}
    assert "random 3 / 66 = 0.05" in capsys.readouterr().out
    # a peer whose final answer hpo never matched
    better = {**close, "tool": "keras_tuner_hyperband", "answer_median": 1}
    ratio = bench_search.summarise([hpo, better], judged)["q"]["ratios"][0]
    assert ratio["as_good_as_peer"]["keras_tuner_hyperband"] == {"hpo": bench_search.NEVER, "peer": 277, "ratio": None}
    assert "keras_tuner_hyperband never / 277" in capsys.readouterr().out


def test_peer_budget_compares_hpo_at_its_budget_with_the_peers_at_theirs(tmp_path) -> None:
    """``--peer-budget``: the summary takes hpo's runs at --budget and the peers' at --peer-budget
    (not the peers' runs at hpo's budget) and says both budgets."""
    import subprocess

    from tests.conftest import cli_env

    def record(tool: str, budget: int, median: int, to_answer: int) -> dict:
        common = {"question": "quick", "seed": 0, "train_size": 3000, "target": 0.8, "max_epochs": 5, "fresh_seeds": [10000]}
        answer = _cfg(tool[0])
        return {
            **_run(tool, 0, median, [], to_answer),
            **common,
            "budget": budget,
            "epochs": budget,
            "cpu_s": 1.0,
            "answer": answer,
            "checkpoints": [{"epochs": budget, "median": median, "answer": answer}],
            "held": [[to_answer, answer]],
            "trials": [],
        }

    out = tmp_path / "runs.jsonl"
    runs = [record("hpo", 40, 3, 8), record("random", 40, 5, 30), record("random", 120, 4, 100), record("hpo", 120, 2, 90)]
    out.write_text("".join(json.dumps(r) + "\n" for r in runs))
    argv = [sys.executable, str(REPO / "scripts" / "bench_search.py"), "--question", "quick", "--tools", "hpo,random"]
    argv += ["--budget", "40", "--summary", "--out", str(out)]
    for extra, random_epochs, hpo_median in [([], 40, 3), (["--peer-budget", "120"], 120, 3)]:
        proc = subprocess.run(argv + extra, env=cli_env(), capture_output=True, text=True, timeout=120, check=True)
        tools = json.loads(proc.stdout.splitlines()[-1])["questions"]["quick"]["tools"]
        assert (tools["hpo"]["epochs"], tools["hpo"]["answer_median"]) == (40, hpo_median)
        assert tools["random"]["epochs"] == random_epochs
    assert "budget 40 epochs, the peers 120;" in proc.stdout
