"""``report STUDY_NAME [STUDY_NAME ...]``: trials.csv, summary.md and figures of a study, or one
comparison of several."""

from __future__ import annotations

import argparse
from typing import Any

from hpo.cli.args import add_artifact_dir, add_storage, positive_int, study_name


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write a CSV, a markdown summary and figures of a study, or compare several",
        description=(
            "One study: write OUT/trials.csv (one row per trial), OUT/summary.md (the answer, the Pareto "
            "front, best trial, counts by state and stop reason, test-set accuracy of the best trial's "
            "saved model) and PNG figures: optimization history, epochs to target vs. parameter count, "
            "the Pareto front (epochs to target vs. parameters and vs. seconds), parameter importances, "
            "learning curves of the best trials, runs over seeds. Several studies of one storage: one "
            "comparison, OUT/summary.md (a table of answers, one row per study, and each study's Pareto "
            "front), OUT/answers.csv, and history.png and pareto.png with every study in its own colour."
        ),
    )
    p.add_argument(
        "study_names",
        nargs="+",
        type=study_name,
        metavar="STUDY_NAME",
        help="name of a study in the storage (see: python -m hpo.run list); two or more: compare them",
    )
    add_storage(p)
    p.add_argument("--out", metavar="DIR", help="output folder (default: reports/STUDY_NAME, reports/A-vs-B for several)")
    add_artifact_dir(p, "where the best trial's saved model is read from, for the test-set accuracy (one study only)")
    p.add_argument(
        "--top",
        type=positive_int,
        default=None,
        metavar="K",
        help="learning curves of the K best trials (default 4; one study only)",
    )


def run(args: argparse.Namespace) -> int:
    from hpo.api import compare, report
    from hpo.errors import HpoError
    from hpo.names import printable

    if len(args.study_names) > 1:
        for flag, value in (("--artifact-dir", args.artifact_dir), ("--top", args.top)):
            if value is not None:
                raise HpoError(f"{flag} applies to the report of one study, not to a comparison of {len(args.study_names)}")
        done = compare(args.study_names, storage=args.storage, out=args.out)
        print(printable(f"{done['out']}: summary.md and answers.csv ({done['rows']} studies), {len(done['figures'])} figures"))
        return 0
    top = 4 if args.top is None else args.top
    done = report(args.study_names[0], storage=args.storage, out=args.out, artifact_dir=args.artifact_dir, top=top)
    acc, how = done["test"] if done["test"] is not None else (None, "no completed trial")
    test = f"test accuracy {acc:.4f}" if acc is not None else f"test accuracy not available: {how}"
    print(printable(f"{done['out']}: trials.csv ({done['rows']} rows), summary.md, {len(done['figures'])} figures; {test}"))
    return 0
