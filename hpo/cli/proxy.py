"""``proxy``: serve a storage to many workers through Optuna's gRPC storage proxy."""

from __future__ import annotations

import argparse
from typing import Any

from hpo.cli.args import add_storage, port
from hpo.errors import HpoError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "proxy",
        help="serve a storage to many workers through Optuna's gRPC proxy",
        description=(
            "Serve the storage at --storage through Optuna's gRPC storage proxy, so that many workers "
            "(--storage grpc://HOST:PORT) share one study without each holding database connections. "
            "Runs until interrupted. Workers behind the proxy have no heartbeat: a crashed worker's "
            "trial stays RUNNING."
        ),
    )
    add_storage(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=port, default=13000, help="port to listen on (default 13000)")


def run(args: argparse.Namespace) -> int:
    import optuna

    from hpo.storage import make_storage, mask_url, resolve_url

    url = resolve_url(args.storage)
    if url.startswith("grpc://"):
        raise HpoError("proxy --storage needs a database URL (postgresql+psycopg2://, mysql+pymysql://, sqlite:///), not grpc://")
    # With Optuna's in-process cache, as its docs advise; no heartbeat: its workers cannot beat,
    # and a heartbeat given to the trials it creates would let other workers fail them.
    storage = optuna.storages.get_storage(make_storage(url, heartbeat_interval=None))
    try:
        # What optuna.storages.run_grpc_proxy_server does, split so that a busy port is reported
        # before "serving" is printed.
        from optuna.storages._grpc.server import make_server
    except ImportError as e:
        raise HpoError(f"no gRPC support ({e.name or e}): pip install 'hpo[grpc]'") from None
    try:
        server = make_server(storage, args.host, args.port)
    except RuntimeError:  # grpc cannot bind
        raise HpoError(f"cannot listen on {args.host}:{args.port}: address in use or not available") from None
    server.start()
    print(f"serving {mask_url(url)} on grpc://{args.host}:{args.port}; workers: --storage grpc://HOST:{args.port}", flush=True)
    try:
        server.wait_for_termination()
    finally:
        server.stop(grace=2)
    return 0
