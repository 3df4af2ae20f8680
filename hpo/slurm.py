"""The Slurm job this process runs in, read from the variables Slurm sets in a job's environment."""

from __future__ import annotations

import os

__all__ = ["allocated_cpus", "job_name", "describe"]


def _positive(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def allocated_cpus() -> int | None:
    """The CPUs Slurm gave this task (``SLURM_CPUS_PER_TASK``, set with ``--cpus-per-task``), or
    None.  Without cgroups (``task/none``) the process still sees all the node's cores, so this
    is the only place that says how many it may use."""
    return _positive("SLURM_CPUS_PER_TASK")


def job_name() -> str | None:
    """``JOBID_TASKID`` for an array task (what ``squeue`` and ``%A_%a`` show), ``JOBID`` for
    another job, None outside Slurm."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None


def describe() -> str | None:
    """``Slurm job 123_4 on node n01`` (``, requeued 2 times`` when it was), or None outside Slurm."""
    job = job_name()
    if job is None:
        return None
    text = f"Slurm job {job}"
    node = os.environ.get("SLURMD_NODENAME")
    if node:
        text += f" on node {node}"
    restarts = _positive("SLURM_RESTART_COUNT")
    if restarts:
        text += f", requeued {restarts} time{'s' if restarts > 1 else ''}"
    return text
