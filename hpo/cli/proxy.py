"""``proxy``: serve a storage to many workers through Optuna's gRPC storage proxy."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

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


def run(args: argparse.Namespace) -> NoReturn:
    import optuna

    from hpo.storage import make_storage, mask_url, resolve_url, use_wal

    args.signals.hold = True  # a signal from here on ends the proxy once it serves (until_signal)
    url = resolve_url(args.storage)
    if url.startswith("grpc://"):
        raise HpoError("proxy --storage needs a database URL (postgresql+psycopg2://, mysql+pymysql://, sqlite:///), not grpc://")
    server = _bind(args.host, args.port)  # before the storage is opened: a taken port changes nothing
    # With Optuna's in-process cache, as its docs advise; no heartbeat: its workers cannot beat,
    # and a heartbeat given to the trials it creates would let other workers fail them.
    storage = make_storage(url, heartbeat_interval=None)
    use_wal(storage)
    from optuna.storages._grpc import servicer
    from optuna.storages._grpc.auto_generated import api_pb2_grpc

    # What optuna.storages.run_grpc_proxy_server does, with the port bound first.
    api_pb2_grpc.add_StorageServiceServicer_to_server(
        servicer.OptunaStorageProxyService(optuna.storages.get_storage(storage)), server
    )
    server.start()
    print(f"serving {mask_url(url)} on grpc://{args.host}:{args.port}; workers: --storage grpc://HOST:{args.port}", flush=True)
    try:
        args.signals.until_signal(lambda: server.wait_for_termination(timeout=0.5))
    finally:
        server.stop(grace=2)


def _bind(host: str, port: int) -> Any:
    """A gRPC server bound to ``host:port``, or one line saying why not.

    gRPC sets SO_REUSEPORT on its sockets by default, so that a second server on a port another
    gRPC server (another proxy) already serves would start without error, and workers' trials
    would land in whichever storage the kernel picks for each connection: here it is off.
    """
    from concurrent.futures import ThreadPoolExecutor

    try:
        import grpc
    except ImportError as e:
        raise HpoError(f"no gRPC support ({e.name or e}): pip install 'hpo[grpc]'") from None
    server = grpc.server(ThreadPoolExecutor(max_workers=10), options=[("grpc.so_reuseport", 0)])
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # grpc >= 1.60 raises where older versions returned 0
        bound = 0
    if bound != port:
        server.stop(None)
        raise HpoError(f"cannot listen on {host}:{port}: address in use or not available")
    return server
