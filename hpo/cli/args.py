"""Argument types and flags several commands share; a usage error is one line, exit 2."""

from __future__ import annotations

import argparse
from typing import Any

from hpo.errors import EXIT_USAGE

DEBUG_HELP = "on bad input, show the full traceback (the password of a storage URL hidden) before the one-line error"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def number(kind: type, minimum: float, what: str) -> Any:
    """An argparse type: ``kind(text)`` at least ``minimum``, else a one-line usage error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, but got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, but got {value}")
        return value

    return parse


non_negative_int = number(int, 0, "a whole number")
non_negative_float = number(float, 0, "a number of seconds")
positive_int = number(int, 1, "a whole number")


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def port(text: str) -> int:
    value = non_negative_int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"a port must be in 1..65535, but got {value}")
    return value


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
    p.add_argument("study_name", metavar="STUDY_NAME", help="name of a study in the storage (see: python -m hpo.run list)")
