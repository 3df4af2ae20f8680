"""The search benchmark's own rules: the input every tool trains on reshuffles at every epoch
(Keras' seeded array fit does not), and how a peer's epochs to an answer as good as hpo's are read."""

from __future__ import annotations

import sys
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
