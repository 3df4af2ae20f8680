"""``dashboard``: optuna-dashboard over a storage and its studies' artifact store."""

from __future__ import annotations

import argparse
import os
from typing import Any, NoReturn

from hpo.cli.args import add_artifact_dir, add_storage, non_empty, port
from hpo.dashboard import TOKEN_ENV, host_name, host_port
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
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        type=_allowed_host,
        metavar="NAME",
        help="also answer requests whose Host header is NAME, a name a reverse proxy or DNS gives this server "
        "(repeatable; the bound address and localhost are always answered)",
    )
    p.add_argument(
        "--token",
        type=non_empty,
        help=f"access token every request must carry (default: ${TOKEN_ENV}): open the printed URL "
        "http://HOST:PORT/?token=TOKEN once, or send Authorization: Bearer TOKEN",
    )


def _allowed_host(text: str) -> str:
    if host_name(text) is None or host_port(text) is not None:
        raise argparse.ArgumentTypeError(f"expected a host name or IP address (no scheme, no port), but got {text!r}")
    return text


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


def run(args: argparse.Namespace) -> NoReturn:
    import sys

    from hpo.dashboard import OutcomeFirst, bind, check_token, guard, listen, loopback, serve, url_host
    from hpo.storage import make_storage, mask_url, resolve_url

    args.signals.hold = True  # a signal from here on ends the dashboard once it serves (until_signal)
    url = resolve_url(args.storage)
    token = args.token or os.environ.get(TOKEN_ENV) or None  # an empty variable counts as unset
    if token is not None:
        check_token(token, "--token" if args.token else TOKEN_ENV)
    listener = bind(args.host, args.port)  # the one socket served: a port in use is bad input, said first
    storage = make_storage(url, mode="browse")
    with listener:
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
        from optuna_dashboard import wsgi

        app = guard(OutcomeFirst(wsgi(storage, artifact_store=store)), args.host, listener, token=token, allow=args.allow_host)
        listen(listener, args.host)
        shown = f"; artifacts in {folder}" if store is not None else ""
        query = f"?token={token}" if token is not None else ""
        print(
            f"optuna-dashboard on http://{url_host(args.host)}:{args.port}/{query} for {mask_url(url)}{shown} (Ctrl-C stops)",
            flush=True,
        )
        if token is None and not loopback(listener):
            print(
                f"hpo: warning: no access token: anyone who can reach {url_host(args.host)}:{args.port} can read and delete "
                f"every study and artifact (set {TOKEN_ENV} or --token)",
                file=sys.stderr,
                flush=True,
            )
        serve(listener, app, args.signals)
