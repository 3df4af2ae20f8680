"""``study STUDY_FILE``: run trials of a study (one worker here, or ``--workers N``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from hpo.cli.args import (
    add_artifact_dir,
    add_storage,
    new_study_name,
    non_negative_float,
    non_negative_int,
    seed,
    threads,
    workers,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "study",
        help="run trials of a study file (creates the study or adds to it)",
        description=(
            "Run trials of the study described by STUDY_FILE. The study is created on first use "
            "and joined by name afterwards: running the same command again adds trials. Each "
            "trial trains until the monitored accuracy reaches the target (its cost is the "
            "epochs needed), is pruned, or runs out of epochs (cost max_epochs + 1 + the gap "
            "to the target)."
        ),
    )
    p.add_argument(
        "study_file",
        metavar="STUDY_FILE",
        help="study file (TOML, or JSON with the same tables), e.g. studies/fashion_dense.toml, or the bare "
        "name of one shipped with hpo, e.g. quickstart (quickstart, fashion_dense, fashion_inception, tiny, ...)",
    )
    add_storage(p)
    p.add_argument(
        "--study-name",
        type=new_study_name,
        metavar="NAME",
        help="study name (default: study.name in the file, else the file's stem)",
    )
    p.add_argument(
        "--n-trials", type=non_negative_int, metavar="N", help="how many trials this command runs (default: study.n_trials)"
    )
    p.add_argument(
        "--timeout",
        type=non_negative_float,
        metavar="S",
        help="stop starting new trials after S seconds (default: study.timeout)",
    )
    p.add_argument("--seed", type=seed, metavar="N", help="sampler seed (same as --set study.seed=N)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a study-file key; VALUE is TOML (a bare word is a string), e.g. "
        "--set objective.target=0.9 --set 'space.dense.units={low=32, high=512, log=true}'",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (a line per finished trial still)")
    p.add_argument("--verbose", action="store_true", help="also Optuna's log lines: each finished trial with every parameter")
    add_artifact_dir(p)
    p.add_argument("--no-artifacts", action="store_true", help="write no per-trial artifacts (plots, histories, models)")
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="write TensorBoard logs per trial to DIR/STUDY_NAME/trial-NNNN (view: tensorboard --logdir DIR)",
    )
    p.add_argument(
        "--tensorboard-batches",
        action="store_true",
        help="with --tensorboard: also log per batch (one point per 32 steps, the steps run per execution)",
    )
    p.add_argument(
        "--workers",
        type=workers,
        default=1,
        metavar="N",
        help="run N worker processes on this machine sharing the study; --n-trials is split between them "
        "(use PostgreSQL or MySQL when workers run on several machines)",
    )
    p.add_argument(
        "--threads",
        type=threads,
        metavar="N",
        help="CPU threads TensorFlow may use in each worker (default: the machine's cores, in a Slurm job "
        "SLURM_CPUS_PER_TASK, divided by --workers)",
    )


def spec_from_args(args: argparse.Namespace) -> Any:
    """The :class:`hpo.worker.WorkerSpec` the flags describe (:func:`hpo.launch.worker_argv` inverts it)."""
    from hpo.worker import WorkerSpec

    return WorkerSpec(
        study_file=args.study_file,
        overrides=tuple(args.overrides),
        study_name=args.study_name,
        n_trials=args.n_trials,
        timeout=args.timeout,
        seed=args.seed,
        artifacts=not args.no_artifacts,
        artifact_dir=args.artifact_dir,
        tensorboard=args.tensorboard,
        tensorboard_batches=args.tensorboard_batches,
        threads=args.threads,
        progress=not args.no_progress,
        verbose=args.verbose,
        debug=bool(getattr(args, "debug", False)),
    )


def run(args: argparse.Namespace) -> int:
    from hpo.api import load_config

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"study.seed={args.seed}")
    return run_study(args, load_config(args.study_file, overrides), spec_from_args(args))


def run_study(args: argparse.Namespace, cfg: Any, spec: Any, on_open: Callable[[Any], None] | None = None) -> int:
    """This command's worker (recycled into fresh processes when due), or ``--workers N``."""
    from hpo.account import Account
    from hpo.launch import recycle, run_workers
    from hpo.storage import resolve_url
    from hpo.worker import run_worker

    url = resolve_url(args.storage)
    if getattr(args, "workers", 1) > 1:
        return run_workers(cfg, url, spec, args.workers)[0]
    n_trials = spec.n_trials if spec.n_trials is not None else cfg.study.n_trials
    account = Account.inherited(asked=n_trials)
    result = run_worker(cfg, url, spec, args.signals, account=account, on_open=on_open)
    if result.recycle:
        recycle(spec, result, account, url)
    return result.code
