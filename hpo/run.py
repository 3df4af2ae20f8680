"""The command line: ``python -m hpo.run study|list|report|dashboard ...``.

Exit codes: 0 done, 2 bad input (one line on stderr, nothing stored changed), 1 a worker
stopped on an unexpected error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

# Before TensorFlow is imported anywhere: keep its C++ start-up chatter off the terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from hpo.errors import HpoError  # noqa: E402

__all__ = ["main", "cli", "build_parser"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. a cluster preempting the job): handled like Ctrl-C, exit 143."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, but got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, but got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, but got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, but got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m hpo.run",
        description=(
            "hpo: how few training epochs does it take to reach a target accuracy, and which "
            "architecture gets there? Optuna studies of Keras models, stored in an RDB."
        ),
        epilog="Storage: --storage URL, else $HPO_STORAGE, else sqlite:///studies/hpo.db. Exit codes: 0 ok, 2 bad input, 130/143 interrupted.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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
    p.add_argument("study_file", metavar="STUDY_FILE", help="TOML study file, e.g. studies/fashion_dense.toml")
    _storage_arg(p)
    p.add_argument("--study-name", metavar="NAME", help="study name (default: study.name in the file, else the file's stem)")
    p.add_argument(
        "--n-trials", type=_non_negative_int, metavar="N", help="how many trials this command runs (default: study.n_trials)"
    )
    p.add_argument(
        "--timeout",
        type=_non_negative_float,
        metavar="S",
        help="stop starting new trials after S seconds (default: study.timeout)",
    )
    p.add_argument("--seed", type=_non_negative_int, metavar="N", help="sampler seed (same as --set study.seed=N)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a study-file key; VALUE is TOML (a bare word is a string), e.g. "
        "--set objective.target=0.9 --set 'space.dense.units={low=32, high=512, log=true}'",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _artifact_arg(p)
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
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser(
        "list", help="list the studies in a storage", description="List the studies with trial counts and best values."
    )
    _storage_arg(p)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

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
    p.add_argument("study_name", metavar="STUDY_NAME", help="name of a study in the storage (see: python -m hpo.run list)")
    _storage_arg(p)
    p.add_argument("--out", metavar="DIR", help="output folder (default: reports/STUDY_NAME)")
    _artifact_arg(p, "where the best trial's saved model is read from, for the test-set accuracy")
    p.add_argument("--top", type=_positive_int, default=4, metavar="K", help="learning curves of the K best trials (default 4)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser(
        "dashboard",
        help="serve optuna-dashboard over the storage and the artifact store",
        description="Serve optuna-dashboard (all studies of the storage, with per-trial artifacts) until Ctrl-C.",
    )
    _storage_arg(p)
    _artifact_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _artifact_arg(p: argparse.ArgumentParser, what: str = "per-trial artifacts: learning curves, histories, best models") -> None:
    p.add_argument("--artifact-dir", metavar="DIR", help=f"artifact store folder, {what} (default: studies/artifacts)")


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, but got {value}")
    return value


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"a port must be in 1..65535, but got {value}")
    return value


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        metavar="URL",
        help="storage URL: sqlite:///FILE, postgresql+psycopg2://USER@HOST/DB, mysql+pymysql://USER@HOST/DB "
        "(default: $HPO_STORAGE, else sqlite:///studies/hpo.db)",
    )


# --------------------------------------------------------------------------------------------
# Commands


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with file descriptor 2 closed: its C++ start-up lines ignore every
    log-level setting.  Python errors still raise (and print) once stderr is back."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def cmd_study(args: argparse.Namespace) -> int:
    from hpo.config import load_config
    from hpo.data import prepare
    from hpo.storage import make_storage, mask_url, open_study, resolve_url

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"study.seed={args.seed}")
    cfg = load_config(args.study_file, overrides)
    n_trials = args.n_trials if args.n_trials is not None else cfg.study.n_trials
    timeout = args.timeout if args.timeout is not None else cfg.study.timeout
    url = resolve_url(args.storage)
    if args.tensorboard_batches and not args.tensorboard:
        raise HpoError("--tensorboard-batches needs --tensorboard DIR")
    if args.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise HpoError("--tensorboard needs the tensorboard package: pip install 'hpo[tensorboard]'")
    artifact_store = None
    if not args.no_artifacts:
        from hpo.artifacts import make_artifact_store

        artifact_store = make_artifact_store(args.artifact_dir)
    split = prepare(cfg.data)  # data errors surface before anything is stored
    storage = make_storage(url)
    study = open_study(cfg, storage, args.study_name)
    before = len(study.get_trials(deepcopy=False))

    _import_tensorflow_quietly()
    from hpo.errors import TrialFailed
    from hpo.objective import Objective

    callbacks, keras_callbacks = [], []
    if artifact_store is not None:
        from hpo.artifacts import ArtifactWriter

        callbacks.append(ArtifactWriter(artifact_store, cfg))
    if args.tensorboard:
        from hpo.artifacts import tensorboard_factory

        keras_callbacks.append(tensorboard_factory(args.tensorboard, study.study_name, batches=args.tensorboard_batches))
    objective = Objective(cfg, split, callbacks=tuple(callbacks), keras_callbacks=tuple(keras_callbacks))
    print(
        f"study {study.study_name!r} in {mask_url(url)}: {cfg.data.dataset} ({len(split.x_train)} train / "
        f"{len(split.x_val)} validation), {cfg.objective.monitor} >= {cfg.objective.target} "
        f"within {cfg.objective.max_epochs} epochs; running {n_trials if n_trials is not None else 'unlimited'} trials",
        flush=True,
    )
    started = time.perf_counter()
    try:
        study.optimize(
            objective,
            n_trials=n_trials,
            timeout=timeout,
            catch=(TrialFailed,),
            gc_after_trial=False,  # the objective clears Keras' session and collects itself
            show_progress_bar=not args.no_progress and (n_trials is not None or timeout is not None),
        )
    except KeyboardInterrupt as e:
        code = EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
        what = "terminated" if code == EXIT_TERMINATED else "interrupted"
        print(f"hpo: {what}: the running trial is stored as FAIL; run the same command to continue the study", file=sys.stderr)
        return code
    print(summary(study, cfg, before, time.perf_counter() - started))
    return 0


def summary(study: Any, cfg: Any, before: int, seconds: float) -> str:
    """A few lines: counts by outcome, the best trial and its parameters."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.is_finished()]
    reached = [t for t in finished if t.user_attrs.get("reached_target")]
    count = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    obj = cfg.objective
    lines = [
        f"{len(trials) - before} trials in {seconds:.1f} s; study {study.study_name!r} holds {len(trials)}: "
        f"{len(reached)} reached {obj.monitor} >= {obj.target}, {count[TrialState.COMPLETE]} complete, "
        f"{count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed"
    ]
    try:
        best = study.best_trial
    except ValueError:
        lines.append("no completed trial yet")
        return "\n".join(lines)
    ua = best.user_attrs
    if ua.get("reached_target"):
        head = f"best: trial {best.number}, {ua['epochs_to_target']} epochs to {obj.monitor} >= {obj.target}"
    else:
        head = f"best: trial {best.number}, target not reached (best {obj.monitor} {ua.get('best_' + obj.monitor)}, value {best.value:.4f})"
    spe = ua.get("seconds_per_epoch")
    lines.append(f"{head}; {ua.get('n_params')} parameters, {spe} s/epoch" if spe is not None else head)
    params = {**best.params, **ua.get("fixed_params", {})}
    lines.append("  " + " ".join(f"{k}={_fmt(v)}" for k, v in params.items()))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def cmd_list(args: argparse.Namespace) -> int:
    import optuna

    from hpo.storage import make_storage, mask_url, resolve_url

    url = resolve_url(args.storage)
    storage = make_storage(url)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=True)
    if not summaries:
        print(f"no studies in {mask_url(url)}")
        return 0
    width = max(len(s.study_name) for s in summaries)
    print(f"{'study':<{width}}  trials  best value  best epochs_to_target")
    for s in summaries:
        best = s.best_trial
        value = f"{best.value:.4f}" if best is not None else "-"
        ett = best.user_attrs.get("epochs_to_target") if best is not None else None
        print(f"{s.study_name:<{width}}  {s.n_trials:>6}  {value:>10}  {ett if ett is not None else '-'}")
    return 0


def _existing_sqlite(url: str) -> str:
    """Reading commands must not create an empty SQLite file where a typo pointed."""
    from pathlib import Path

    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///") :])
        if not path.is_file():
            raise HpoError(f"no SQLite file {str(path)!r} (storage {url}): run a study first or check --storage")
    return url


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hpo.storage import make_storage, resolve_url

    storage = make_storage(_existing_sqlite(resolve_url(args.storage)))
    from hpo.report import load_study, study_info, write_report

    study = load_study(args.study_name, storage)
    study_info(study)  # not an hpo study: one line, before anything is written
    artifact_store = None
    folder = Path(args.artifact_dir or "studies/artifacts")
    if folder.is_dir():
        from optuna.artifacts import FileSystemArtifactStore

        artifact_store = FileSystemArtifactStore(str(folder))
    out = Path(args.out or Path("reports") / args.study_name)
    _import_tensorflow_quietly()
    done = write_report(study, out, artifact_store=artifact_store, top=args.top)
    acc, how = done["test"] if done["test"] is not None else (None, "no completed trial")
    test = f"test accuracy {acc:.4f}" if acc is not None else f"test accuracy not available: {how}"
    print(f"{out}: trials.csv ({done['rows']} rows), summary.md, {len(done['figures'])} figures; {test}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import socket

    from hpo.artifacts import make_artifact_store
    from hpo.storage import make_storage, mask_url, resolve_url

    url = _existing_sqlite(resolve_url(args.storage))
    try:  # a taken port or an unknown host is bad input: say so in one line before serving
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise HpoError(f"cannot listen on {args.host}:{args.port}: {reason}") from None
    storage = make_storage(url)
    store = make_artifact_store(args.artifact_dir)
    from optuna_dashboard import run_server

    print(f"optuna-dashboard on http://{args.host}:{args.port}/ for {mask_url(url)} (Ctrl-C stops)", flush=True)
    run_server(storage, host=args.host, port=args.port, artifact_store=store)
    return 0


COMMANDS = {"study": cmd_study, "list": cmd_list, "report": cmd_report, "dashboard": cmd_dashboard}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # Explicit handlers: a process started in the background by a shell inherits SIGINT as
    # ignored, and a cluster's SIGTERM must end the trial as cleanly as Ctrl-C does.
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _on_sigterm),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
    }
    try:
        return COMMANDS[args.command](args)
    except HpoError as e:
        if args.debug:
            raise
        print(f"hpo: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def cli() -> None:
    code = main()
    # Everything is stored by now.  Skip the interpreter's teardown, which with TensorFlow
    # loaded takes seconds (its thread pools and graphs), so that signals end workers promptly.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    cli()
