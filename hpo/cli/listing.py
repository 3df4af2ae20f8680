"""``list``: the studies in a storage, with trial counts, best values and answers."""

from __future__ import annotations

import argparse
from typing import Any

from hpo.cli.args import add_storage


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "list", help="list the studies in a storage", description="List the studies with trial counts and best values."
    )
    add_storage(p)


def run(args: argparse.Namespace) -> int:
    import optuna

    from hpo.answer import ANSWER_ATTR, format_runs
    from hpo.storage import existing_sqlite, make_storage, mask_url, resolve_url
    from hpo.study import STUDY_ATTR

    url = existing_sqlite(resolve_url(args.storage))
    storage = make_storage(url)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=True)
    if not summaries:
        print(f"no studies in {mask_url(url)}")
        return 0
    width = max(len(s.study_name) for s in summaries)
    print(f"{'study':<{width}}  trials  best value  best epochs_to_target  answer")
    for s in summaries:
        best = s.best_trial
        value = f"{best.value:.4f}" if best is not None else "-"
        ett = best.user_attrs.get("epochs_to_target") if best is not None else None
        answer = s.user_attrs.get(ANSWER_ATTR)
        confirming = (s.user_attrs.get(STUDY_ATTR) or {}).get("config", {}).get("study", {}).get("confirm_seeds", 3) > 1
        shown = format_runs(answer) if answer else ("none confirmed yet" if confirming and STUDY_ATTR in s.user_attrs else "-")
        print(f"{s.study_name:<{width}}  {s.n_trials:>6}  {value:>10}  {str(ett) if ett is not None else '-':>21}  {shown}")
    return 0
