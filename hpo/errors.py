"""Errors shown to users as one line (the CLI exits 2 on any :class:`HpoError`)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "HpoError",
    "ConfigError",
    "DataError",
    "StorageError",
    "StudyMismatchError",
    "MonitorError",
    "TrialFailed",
    "warnings_as_lines",
]


class HpoError(Exception):
    """Base class of every error hpo reports to a user as a single line."""

    def __str__(self) -> str:  # one line, whatever the message held
        return " ".join(super().__str__().split())


class ConfigError(HpoError):
    """A study file, a ``--set`` override or a CLI flag is invalid."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.message = message
        self.source = source
        self.key = key
        parts = [p for p in (source, key) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class DataError(HpoError):
    """A dataset could not be found or a data file is corrupt."""


class StorageError(HpoError):
    """A storage URL is malformed or the storage cannot be reached."""


class StudyMismatchError(HpoError):
    """An existing study was created with settings that this run contradicts."""


class MonitorError(HpoError):
    """The monitored metric is missing from Keras' logs: every trial would fail the same way."""


class TrialFailed(Exception):
    """One trial failed (not the study): the trial is stored as FAIL and the study goes on."""


# Exit codes of every command (the README lists them).
EXIT_OK = 0
EXIT_FAILED = 1  # a worker stopped on an unexpected error
EXIT_USAGE = 2  # bad input: one line on stderr, nothing stored changed
EXIT_FAILURES = 3  # a worker stopped after study.max_consecutive_failures failed trials in a row
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM


def warnings_as_lines(category: type[Warning]) -> None:
    """Show every warning of ``category`` as one ``hpo: warning:`` line on stderr, each time it
    is raised; other warnings go their usual way.  Inside ``warnings.catch_warnings()`` it lasts
    until the block ends."""
    import sys
    import warnings

    previous = warnings.showwarning

    def show(message: Any, cls: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if issubclass(cls, category):
            print(f"hpo: warning: {message}", file=sys.stderr, flush=True)
        else:
            previous(message, cls, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", category)
