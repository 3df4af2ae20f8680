"""``confirm STUDY_NAME``: re-run a study's fastest configurations over more seeds."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from hpo.cli.args import add_artifact_dir, add_storage, add_study_name, more_seeds, positive_int, threads
from hpo.errors import HpoError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "confirm",
        help="re-run a study's fastest configurations over more seeds and print their medians",
        description=(
            "Re-run the K configurations with the fewest epochs to the target (single trials) N more "
            "times each, every run with its own seed and never pruned, into the same study; then print "
            "each configuration's median epochs-to-target and range, and the study's answer. For "
            "studies run with confirmation off (study.confirm_seeds < 2) or made before it existed."
        ),
    )
    add_study_name(p)
    add_storage(p)
    p.add_argument("--top", type=positive_int, default=3, metavar="K", help="configurations to confirm (default 3)")
    p.add_argument("--seeds", type=more_seeds, default=2, metavar="N", help="more runs of each (default 2)")
    p.add_argument(
        "--study-file",
        metavar="FILE",
        help="the study file, for studies that do not store theirs (default: the one stored on the study)",
    )
    add_artifact_dir(p)
    p.add_argument("--no-artifacts", action="store_true", help="write no per-trial artifacts")
    p.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=threads, metavar="N", help="CPU threads TensorFlow may use")


def fastest_configurations(study: Any, k: int) -> list[Any]:
    """The ``k`` original trials with the fewest epochs to the target, one per parameter set."""
    from optuna.trial import TrialState

    reached = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("epochs_to_target") is not None and t.user_attrs.get("repeat_of") is None
    ]
    reached.sort(key=lambda t: (t.user_attrs["epochs_to_target"], t.user_attrs.get("n_params") or 0, t.number))
    chosen, seen = [], set()
    for t in reached:
        key = tuple(sorted(t.params.items()))
        if key not in seen:
            seen.add(key)
            chosen.append(t)
    return chosen[:k]


def run(args: argparse.Namespace) -> int:
    from hpo.answer import answer_line, compute_answer, configurations, format_runs
    from hpo.api import load_config
    from hpo.cli.study import run_study
    from hpo.names import printable
    from hpo.search import check_config
    from hpo.storage import make_storage, resolve_url
    from hpo.study import load_study, stored_config
    from hpo.worker import WorkerSpec

    url = resolve_url(args.storage)
    reader = make_storage(url, mode="read")
    study = load_study(args.study_name, reader)
    cfg = load_config(args.study_file) if args.study_file else check_config(stored_config(study))
    seeds = max(cfg.study.confirm_seeds, args.seeds + 1)  # runs each configuration has afterwards
    cfg = dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, confirm_seeds=seeds, recycle_after=0))
    chosen = fastest_configurations(study, args.top)
    if not chosen:
        raise HpoError(f"study {args.study_name!r} has no trial that reached the target: nothing to confirm")

    def enqueue(opened: Any) -> None:
        for trial in chosen:
            for _ in range(args.seeds):
                opened.enqueue_trial(dict(trial.params), user_attrs={"repeat_of": trial.number, "race": False})
        print(
            f"confirming trials {', '.join(str(t.number) for t in chosen)} of {args.study_name!r}: "
            f"{args.seeds} more runs each ({len(chosen) * args.seeds} trials)",
            flush=True,
        )

    spec = WorkerSpec(
        study_name=args.study_name,
        n_trials=0,
        artifacts=not args.no_artifacts,
        artifact_dir=args.artifact_dir,
        threads=args.threads,
        progress=not args.no_progress,
        debug=bool(getattr(args, "debug", False)),
    )
    code = run_study(args, cfg, spec, on_open=enqueue)
    if code != 0:
        return code
    trials = load_study(args.study_name, reader).get_trials(deepcopy=False)
    found = configurations(trials)
    print(f"{'trial':>5}  {'runs':>4}  {'median':>8}  {'range':>11}  {'parameters':>10}  epochs")
    for trial in chosen:
        c = found.get(trial.number)
        if c is None:
            continue
        span = f"{c['min']:g}-{c['max']:g}" if c["max"] is not None else (f"{c['min']:g}-" if c["min"] is not None else "-")
        median = f"{c['median']:g}" if c.reached else "-"
        size = printable(c["n_params"] or "-")
        print(f"{trial.number:>5}  {c['runs']:>4}  {median:>8}  {span:>11}  {size:>10}  {format_runs(c)}")
    print(f"answer: {answer_line(compute_answer(trials, seeds), seeds)}")
    return 0
