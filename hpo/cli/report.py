"""``report STUDY_NAME``: trials.csv, summary.md and figures of a study."""

from __future__ import annotations

import argparse
from typing import Any

from hpo.cli.args import add_artifact_dir, add_storage, add_study_name, positive_int


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write a CSV, a markdown summary and figures of a study",
        description=(
            "Write OUT/trials.csv (one row per trial), OUT/summary.md (best trial, counts by state "
            "and stop reason, test-set accuracy of the best trial's saved model) and PNG figures: "
            "optimization history, epochs to target vs. parameter count, parameter importances, "
            "learning curves of the best trials."
        ),
    )
    add_study_name(p)
    add_storage(p)
    p.add_argument("--out", metavar="DIR", help="output folder (default: reports/STUDY_NAME)")
    add_artifact_dir(p, "where the best trial's saved model is read from, for the test-set accuracy")
    p.add_argument("--top", type=positive_int, default=4, metavar="K", help="learning curves of the K best trials (default 4)")


def run(args: argparse.Namespace) -> int:
    from hpo.api import report
    from hpo.names import printable

    done = report(args.study_name, storage=args.storage, out=args.out, artifact_dir=args.artifact_dir, top=args.top)
    acc, how = done["test"] if done["test"] is not None else (None, "no completed trial")
    test = f"test accuracy {acc:.4f}" if acc is not None else f"test accuracy not available: {how}"
    print(printable(f"{done['out']}: trials.csv ({done['rows']} rows), summary.md, {len(done['figures'])} figures; {test}"))
    return 0
