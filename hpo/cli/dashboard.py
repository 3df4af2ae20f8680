"""``dashboard``: optuna-dashboard over a storage and its studies' artifact store."""

from __future__ import annotations

import argparse
import os
from typing import Any

from hpo.cli.args import add_artifact_dir, add_storage, port
from hpo.errors import HpoError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "dashboard",
        help="serve optuna-dashboard over the storage and the artifact store",
        description="Serve optuna-dashboard (all studies of the storage, with per-trial artifacts) until Ctrl-C.",
    )
    add_storage(p)
    add_artifact_dir(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8080, help="port (default 8080)")


def _folder(storage: Any, url: str, given: str | None) -> Any:
    """The artifact folder of the storage's studies: ``--artifact-dir``, else the one they record
    (one folder serves the dashboard: the newest study's when they differ), else the default."""
    import optuna

    from hpo.study import ARTIFACT_DIR_KEY, STUDY_ATTR, artifact_folder

    if given:
        return artifact_folder(url, given)
    recorded = [
        (s.user_attrs.get(STUDY_ATTR) or {}).get(ARTIFACT_DIR_KEY)
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    ]
    recorded = [r for r in recorded if r]
    return artifact_folder(url, recorded[-1] if recorded else None)


def run(args: argparse.Namespace) -> int:
    import socket
    import sys

    from hpo.storage import existing_sqlite, make_storage, mask_url, resolve_url

    url = existing_sqlite(resolve_url(args.storage))
    try:  # a taken port or an unknown host is bad input: say so in one line before serving
        socket.getaddrinfo(args.host, args.port)
        with socket.create_server((args.host, args.port)):
            pass
    except socket.gaierror as e:
        raise HpoError(f"cannot listen on {args.host}:{args.port}: unknown host ({e.strerror})") from None
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise HpoError(f"cannot listen on {args.host}:{args.port}: {reason}") from None
    storage = make_storage(url)
    folder = _folder(storage, url, args.artifact_dir)
    if args.artifact_dir and not folder.is_dir():
        raise HpoError(f"--artifact-dir: no folder {args.artifact_dir!r}")
    store = None
    if folder.is_dir():
        from optuna.artifacts import FileSystemArtifactStore

        store = FileSystemArtifactStore(str(folder))
    else:
        print(
            f"hpo: warning: artifact folder {str(folder)!r} is missing: pass --artifact-dir DIR where the artifacts are",
            file=sys.stderr,
        )
    from optuna_dashboard import run_server

    shown = f"; artifacts in {folder}" if store is not None else ""
    print(f"optuna-dashboard on http://{args.host}:{args.port}/ for {mask_url(url)}{shown} (Ctrl-C stops)", flush=True)
    run_server(storage, host=args.host, port=args.port, artifact_store=store)
    return 0
