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

    from hpo.storage import EmptyStorage, make_storage, mask_url, resolve_url

    url = resolve_url(args.storage)
    try:
        summaries = optuna.get_all_study_summaries(make_storage(url, mode="read"), include_best_trial=True)
    except EmptyStorage:
        summaries = []
    if not summaries:
        print(f"no studies in {mask_url(url)}")
        return 0
    rows = [_row(s) for s in summaries]
    width = min(max(len(r[0]) for r in rows), NAME_WIDTH)  # a long name overflows its column, not every line
    print(f"{'study':<{width}}  trials  best value  best epochs_to_target  answer")
    for name, n_trials, value, ett, shown in rows:
        print(f"{name:<{width}}  {n_trials:>6}  {value:>10}  {ett:>21}  {shown}")
    return 0


NAME_WIDTH = 40


def _row(s: Any) -> tuple[str, ...]:
    """One study's line as text.  Anyone can name a study or set its attributes in a shared
    storage: names and values are shown escaped (no control character reaches the terminal), and
    a value hpo cannot read shows as ``?``."""
    from hpo.answer import ANSWER_ATTR, format_runs
    from hpo.names import printable
    from hpo.study import STUDY_ATTR

    best = s.best_trial
    value = f"{best.value:.4f}" if best is not None and isinstance(best.value, float) else "-"
    ett = best.user_attrs.get("epochs_to_target") if best is not None else None
    answer = s.user_attrs.get(ANSWER_ATTR)
    settings = s.user_attrs.get(STUDY_ATTR)
    seeds = _dig(settings, "config", "study", "confirm_seeds")
    confirming = isinstance(settings, dict) and (seeds is None or (isinstance(seeds, int) and seeds > 1))
    try:
        shown = format_runs(answer) if answer else ("none confirmed yet" if confirming else "-")
    except Exception:  # noqa: BLE001 - an answer attribute written by another program
        shown = "?"
    return printable(s.study_name), str(s.n_trials), value, printable(ett if ett is not None else "-"), printable(shown)


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value
