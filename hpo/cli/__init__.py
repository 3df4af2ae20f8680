"""The command line: ``python -m hpo.run COMMAND ...`` (or ``hpo COMMAND ...``).

One module per command (:mod:`hpo.cli.study`, ``confirm``, ``listing``, ``report``,
``dashboard``, ``proxy``), each with ``add_parser(subparsers)`` and ``run(args) -> exit code``;
they import Optuna, TensorFlow and the rest of hpo only when they run.  Exit codes are in
:mod:`hpo.errors`: 0 done, 2 bad input (one line on stderr, nothing stored changed), 1 a worker
stopped on an unexpected error, 3 a worker stopped after ``study.max_consecutive_failures``
failed trials in a row, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

# Before TensorFlow is imported anywhere: keep its C++ start-up chatter off the terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's C++ log lines; hpo reports its errors itself

from hpo.cli.args import DEBUG_HELP, Parser  # noqa: E402
from hpo.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, HpoError  # noqa: E402

__all__ = ["COMMANDS", "build_parser", "cli", "invoked_as", "main"]

# command -> module of hpo.cli, in the order ``--help`` lists them
COMMANDS = {
    "study": "study",
    "proxy": "proxy",
    "list": "listing",
    "report": "report",
    "confirm": "confirm",
    "dashboard": "dashboard",
}


def _module(command: str):
    return importlib.import_module(f"hpo.cli.{COMMANDS[command]}")


def invoked_as(argv0: str | None = None) -> str:
    """How the user started the command line, for ``--help`` and error lines: ``hpo`` (the
    installed script), ``python -m hpo``, else ``python -m hpo.run``."""
    path = sys.argv[0] if argv0 is None else argv0
    name = os.path.basename(path)
    if name in ("hpo", "hpo.exe"):
        return "hpo"
    if name == "__main__.py" and os.path.basename(os.path.dirname(path)) == "hpo":
        return "python -m hpo"
    return "python -m hpo.run"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog or invoked_as(),
        description=(
            "hpo: how few training epochs does it take to reach a target accuracy, and which "
            "architecture gets there? Optuna studies of Keras models, stored in an RDB."
        ),
        epilog="Storage: --storage URL, else $HPO_STORAGE, else sqlite:///studies/hpo.db. Exit codes: 0 ok, 1 a worker failed, 2 bad input, 3 too many failed trials in a row, 130/143 interrupted.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        _module(command).add_parser(sub)
    for p in sub.choices.values():  # also after the command: python -m hpo.run study ... --debug
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def _hide_passwords(argv: Sequence[str] | None) -> None:
    """Before anything can print: scrub the storage URLs' secrets (``--storage``, ``HPO_STORAGE``)
    from every later write to stdout and stderr, log record and warning (see :mod:`hpo.redact`).
    Worker processes run this themselves on the same URLs."""
    from hpo.redact import guard_streams, register_argv, register_url

    register_url(os.environ.get("HPO_STORAGE"))
    register_argv(sys.argv[1:] if argv is None else argv)
    guard_streams()


def _print_traceback(error: BaseException, args: argparse.Namespace) -> None:
    """``--debug``: the traceback of a bad-input error, with the error behind it (a driver's, a
    parser's) that the one-line message leaves out, and the storage secrets hidden."""
    import traceback

    from hpo.redact import scrub

    error.__suppress_context__ = False
    text = "".join(traceback.format_exception(error))
    sys.stderr.write(scrub(text, getattr(args, "storage", None) or os.environ.get("HPO_STORAGE")))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (never exits or replaces the process, except a
    ``study`` worker recycling itself, see :func:`hpo.launch.recycle`)."""
    _hide_passwords(argv)
    from hpo.worker import Terminated, handling_signals

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    with handling_signals() as signals:
        args.signals = signals
        try:
            return _module(args.command).run(args)
        except HpoError as e:
            if args.debug:
                _print_traceback(e, args)
            print(f"hpo: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt as e:
            return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED


def cli() -> None:
    try:
        code = main()
    except KeyboardInterrupt:  # before the command's handlers were in place
        code = EXIT_INTERRUPTED
    from hpo.storage import close_sqlite

    close_sqlite()
    # Everything is stored by now.  Skip the interpreter's teardown, which with TensorFlow
    # loaded takes seconds (its thread pools and graphs), so that signals end workers promptly.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
