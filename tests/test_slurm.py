"""``hpo.slurm``: what a worker reads from a Slurm job's environment."""

from __future__ import annotations

import pytest

from hpo import slurm as hpo_slurm
from hpo.launch import cpu_count

SLURM_VARS = (
    "SLURM_CPUS_PER_TASK",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_ID",
    "SLURMD_NODENAME",
    "SLURM_RESTART_COUNT",
)


@pytest.fixture
def outside_slurm(monkeypatch):
    for name in SLURM_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_outside_slurm_nothing_is_read(outside_slurm):
    assert (hpo_slurm.allocated_cpus(), hpo_slurm.job_name(), hpo_slurm.describe()) == (None, None, None)


def test_an_array_task_is_named_as_squeue_shows_it(outside_slurm):
    outside_slurm.setenv("SLURM_JOB_ID", "107")
    assert hpo_slurm.describe() == "Slurm job 107"
    for name, value in (("SLURM_ARRAY_JOB_ID", "105"), ("SLURM_ARRAY_TASK_ID", "2"), ("SLURMD_NODENAME", "gpu07")):
        outside_slurm.setenv(name, value)
    assert hpo_slurm.job_name() == "105_2"
    assert hpo_slurm.describe() == "Slurm job 105_2 on node gpu07"
    outside_slurm.setenv("SLURM_RESTART_COUNT", "0")
    assert hpo_slurm.describe() == "Slurm job 105_2 on node gpu07"
    outside_slurm.setenv("SLURM_RESTART_COUNT", "2")
    assert hpo_slurm.describe() == "Slurm job 105_2 on node gpu07, requeued 2 times"


def test_workers_use_the_cpus_slurm_allocated_not_the_node_s(outside_slurm):
    outside_slurm.setenv("SLURM_CPUS_PER_TASK", "3")
    assert hpo_slurm.allocated_cpus() == 3
    assert cpu_count() == 3  # --workers N splits these
    for bad in ("", "0", "x"):
        outside_slurm.setenv("SLURM_CPUS_PER_TASK", bad)
        assert hpo_slurm.allocated_cpus() is None
