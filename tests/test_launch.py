"""Worker command lines (one builder for recycling and launching) and splitting trials."""

from __future__ import annotations

import pytest

from hpo.cli import build_parser
from hpo.cli.study import spec_from_args
from hpo.launch import shares, worker_argv
from hpo.worker import WorkerSpec

SPECS = [
    WorkerSpec(study_file="studies/tiny.toml"),
    WorkerSpec(
        study_file="/tmp/x y/study.json",
        overrides=("objective.target=0.9", "space.dense.units={low=32, high=512, log=true}"),
        study_name="name with spaces",
        n_trials=7,
        timeout=12.5,
        seed=3,
        artifact_dir="/abs/artifacts",
        tensorboard="/tb",
        tensorboard_batches=True,
        threads=2,
        progress=False,
        debug=True,
    ),
    WorkerSpec(study_file="s.toml", n_trials=0, artifacts=False, timeout=0.001),
]


@pytest.mark.parametrize("spec", SPECS)
def test_the_command_line_of_a_worker_parses_back_into_its_spec(spec: WorkerSpec) -> None:
    argv = worker_argv(spec)
    assert argv[1:3] == ["-m", "hpo.run"]
    args = build_parser().parse_args(argv[3:])
    assert args.command == "study"
    assert spec_from_args(args) == spec


def test_a_command_line_needs_a_study_file() -> None:
    with pytest.raises(ValueError, match="study_file"):
        worker_argv(WorkerSpec())


def test_shares_split_trials_evenly_and_start_no_idle_worker() -> None:
    assert shares(20, 4) == [5, 5, 5, 5]
    assert shares(7, 3) == [3, 2, 2]
    assert shares(2, 4) == [1, 1]
    assert shares(0, 3) == []
    assert shares(None, 2) == [None, None]
