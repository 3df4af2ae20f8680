"""Argument types and flags several commands share; a usage error is one line, exit 2."""

from __future__ import annotations

import argparse
from typing import Any

from hpo.config import MAX_CONFIRM_SEEDS, MAX_TRIALS, RUN_BOUNDS, Bound, shown
from hpo.errors import EXIT_USAGE
from hpo.names import name_problem, new_name_problem

DEBUG_HELP = "on bad input, show the full traceback (the password of a storage URL hidden) before the one-line error"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def number(kind: type, bound: Bound, what: str) -> Any:
    """An argparse type: ``kind(text)`` within ``bound``, else a one-line usage error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, but got {shown(text)}") from None
        problem = bound.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


non_negative_int = number(int, RUN_BOUNDS["n_trials"], "a whole number")
non_negative_float = number(float, RUN_BOUNDS["timeout"], "a number of seconds")
positive_int = number(int, Bound(1, MAX_TRIALS), "a whole number")
seed = number(int, RUN_BOUNDS["seed"], "a whole number")
threads = number(int, RUN_BOUNDS["threads"], "a whole number")
workers = number(int, RUN_BOUNDS["workers"], "a whole number")
more_seeds = number(int, Bound(1, MAX_CONFIRM_SEEDS - 1), "a whole number")  # the original run is one of the seeds
port = number(int, Bound(1, 65535), "a port number")


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def name_type(problem_of: Any) -> Any:
    """An argparse type: a non-empty study name that ``problem_of`` finds no problem with."""

    def parse(text: str) -> str:
        problem = problem_of(non_empty(text))
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return text

    return parse


study_name = name_type(name_problem)  # a name to look up
new_study_name = name_type(new_name_problem)  # a name hpo may create a study under


def add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        type=non_empty,
        metavar="URL",
        help="storage URL: sqlite:///FILE, postgresql+psycopg2://USER@HOST/DB, mysql+pymysql://USER@HOST/DB, "
        "grpc://HOST:PORT (default: $HPO_STORAGE, else sqlite:///studies/hpo.db)",
    )


def add_artifact_dir(
    p: argparse.ArgumentParser, what: str = "per-trial artifacts: learning curves, histories, best models"
) -> None:
    p.add_argument(
        "--artifact-dir",
        metavar="DIR",
        help=f"artifact store folder, {what} (default: the one the study records, else 'artifacts' beside "
        "the SQLite file, else studies/artifacts)",
    )


def add_study_name(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "study_name", type=study_name, metavar="STUDY_NAME", help="name of a study in the storage (see: python -m hpo.run list)"
    )
