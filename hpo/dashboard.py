"""optuna-dashboard behind a guard, served on one socket.

optuna-dashboard answers any ``Host`` header and asks for no credentials, so a web page the user
visits could reach it through ``127.0.0.1`` by DNS rebinding (its own name, resolved to this
machine) and read or delete every study.  :class:`Guard` wraps optuna-dashboard's WSGI app and lets
a request through only when

* its ``Host`` header names this server (:func:`allowed_names`), else ``403``;
* a state-changing request (``POST``, ``PUT``, ``PATCH``, ``DELETE``) sent by a browser comes from
  a page of this server (its ``Origin`` header), else ``403``;
* with an access token, it carries the token (``Authorization: Bearer TOKEN``, or the cookie set
  when ``/?token=TOKEN`` is opened once), else ``401``.

:func:`bind` binds the one socket the server uses (no ``SO_REUSEPORT``: a port another server
holds, a gRPC one included, is refused), :func:`listen` opens it once the dashboard is ready, and
:func:`serve` serves it, a thread per request, until a signal ends the process.

:class:`OutcomeFirst` shapes what optuna-dashboard shows of each trial: its outcome first among
the user attributes, and JSON values on one line.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qsl, quote, urlencode, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from hpo.errors import HpoError

if TYPE_CHECKING:
    from hpo.worker import Signals

__all__ = [
    "OUTCOME_FIRST",
    "TOKEN_ENV",
    "Guard",
    "OutcomeFirst",
    "allowed_names",
    "bind",
    "check_token",
    "guard",
    "host_name",
    "host_port",
    "listen",
    "loopback",
    "outcome_first",
    "serve",
    "url_host",
]

TOKEN_ENV = "HPO_DASHBOARD_TOKEN"
TOKEN_MIN_LENGTH = 16
_TOKEN = re.compile(r"[A-Za-z0-9._~-]+")  # unreserved in a URL and valid in a cookie as it is
_NAME = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9_-]{1,63}(?<!-))*")
_HOST_HEADER = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]/\\@\s]+))(?::(?P<port>[0-9]{1,5}))?")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_WARNINGS = 10  # distinct refused Host headers reported on stderr
# A trial's user attributes shown first, in this order ("best_": best_<monitor>); the rest follow.
OUTCOME_FIRST = ("stop_reason", "epochs_to_target", "best_", "n_params", "seconds", "epochs")
_STUDY_DETAIL = re.compile(r"/api/studies/[0-9]+")  # optuna-dashboard's study data, trials included


def check_token(token: str, source: str) -> str:
    """``token`` if it is long enough and URL-safe, else an error naming ``source`` (never the token)."""
    if len(token) < TOKEN_MIN_LENGTH or not _TOKEN.fullmatch(token):
        raise HpoError(
            f"{source}: a token must be at least {TOKEN_MIN_LENGTH} characters from A-Z a-z 0-9 . _ ~ -, but the "
            f"one given has {len(token)} characters{'' if _TOKEN.fullmatch(token) else ' and others'} "
            '(make one with: python -c "import secrets; print(secrets.token_urlsafe())")'
        )
    return token


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:  # fe80::1%eth0, as a socket bound to a link-local address names itself
            address = ipaddress.IPv6Address(text.split("%", 1)[0])
        if address.ipv4_mapped is not None:  # ::ffff:192.0.2.1, a client of a dual-stack socket
            return address.ipv4_mapped
    return address


def host_name(text: str) -> str | None:
    """The host of a ``Host`` header or a ``--allow-host`` name, normalised (lower case, no trailing
    dot, an IP address in its short form, no brackets, no port), or None if it is not one."""
    text = text.strip().lower()
    address = _address(text)  # also an IPv6 address without brackets (an Origin's host, --allow-host)
    if address is not None:
        return str(address)
    m = _HOST_HEADER.fullmatch(text)
    if m is None:
        return None
    if m["v6"] is not None:
        address = _address(m["v6"])
        return str(address) if address is not None else None
    name = m["name"].removesuffix(".")
    address = _address(name)
    if address is not None:
        return str(address)
    return name if _NAME.fullmatch(name) else None


def host_port(text: str) -> int | None:
    """The port of a ``Host`` header, if it names one."""
    m = _HOST_HEADER.fullmatch(text.strip().lower())
    return int(m["port"]) if m and m["port"] else None


def url_host(host: str) -> str:
    """``host`` as it goes in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def _resolved(name: str) -> set[str]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return set()
    return {str(a) for a in (_address(info[4][0]) for info in infos) if a is not None}


def allowed_names(host: str, bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names a ``Host`` header may carry for a server bound to ``bound`` (the address ``host``
    resolved to): ``host`` itself, ``bound`` and ``localhost``; ``127.0.0.1`` and ``::1`` when bound
    to a loopback address; this machine's host names and their addresses when bound to every
    interface; and ``extra`` (``--allow-host``)."""
    names = {host_name(host), host_name(bound), "localhost"}
    address = _address(bound)
    if address is not None and address.is_loopback:
        names |= {"127.0.0.1", "::1"}
    if address is not None and address.is_unspecified:
        for own in {socket.gethostname(), socket.getfqdn()}:
            names.add(host_name(own))
            names |= _resolved(own)
    names |= {host_name(name) for name in extra}
    return frozenset(n for n in names if n)


def _text(start_response: Callable, status: str, text: str, headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    body = (text + "\n").encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
    )
    return [body]


def _equal(given: str, secret: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), secret.encode())


class Guard:
    """WSGI middleware that lets a request reach ``app`` only from this server's own pages.

    Args:
        app: The WSGI application guarded (optuna-dashboard's, from :func:`optuna_dashboard.wsgi`).
        names: The host names and addresses a ``Host`` header may carry, with any port (behind
            ``ssh -L 9000:127.0.0.1:8080`` a browser sends ``localhost:9000``); see
            :func:`allowed_names`.
        port: The port served; it names the cookie, since browsers share cookies between the
            ports of one host.
        token: The access token every request must carry, or None for none.
        any_local_address: Also accept, as ``Host``, the address of this machine a client
            connected to (a server bound to every interface).
        allowed_origins: Names (``--allow-host``) whose pages may send state-changing requests
            although the ``Host`` header differs (a reverse proxy that rewrites it).
    """

    def __init__(
        self,
        app: Callable,
        names: Iterable[str],
        port: int,
        *,
        token: str | None = None,
        any_local_address: bool = False,
        allowed_origins: Iterable[str] = (),
    ) -> None:
        if token is not None:
            check_token(token, "token")
        self.app = app
        self.names = frozenset(names)
        self.token = token
        self.any_local_address = any_local_address
        self.allowed_origins = frozenset(filter(None, (host_name(n) for n in allowed_origins)))
        self.cookie_name = f"hpo_dashboard_{port}"
        # the cookie holds a value derived from the token, not the token itself
        self._cookie = hmac.new((token or "").encode(), b"hpo dashboard cookie", hashlib.sha256).hexdigest()
        self._refused: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST", "")
        if not self._host_allowed(host, environ):
            self._warn(host)
            return _text(start_response, "403 Forbidden", "403 Forbidden: this server does not answer to that Host header")
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method not in _SAFE_METHODS and not self._same_origin(environ.get("HTTP_ORIGIN"), host):
            return _text(start_response, "403 Forbidden", "403 Forbidden: a change sent by a page of another site")
        if self.token is not None:
            query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            given = [v for k, v in query if k == "token"]
            if given and method in ("GET", "HEAD"):
                if len(given) == 1 and _equal(given[0], self.token):
                    return self._remember(environ, query, start_response)
            elif self._authorized(environ):
                return self.app(environ, start_response)
            return _text(
                start_response,
                "401 Unauthorized",
                "401 Unauthorized: open http://HOST:PORT/?token=TOKEN once (the URL the dashboard printed), "
                "or send Authorization: Bearer TOKEN",
                [("WWW-Authenticate", 'Bearer realm="hpo dashboard"')],
            )
        return self.app(environ, start_response)

    def _host_allowed(self, header: str, environ: dict[str, Any]) -> bool:
        name = host_name(header) if header else None
        if name is None:
            return False
        if name in self.names:
            return True
        if self.any_local_address and "hpo.local_address" in environ:
            return name == str(_address(environ["hpo.local_address"]))
        return False

    def _same_origin(self, origin: str | None, host: str) -> bool:
        if origin is None:  # not sent by a browser's page (a script, curl): the Host check and token apply
            return True
        try:
            parts = urlsplit(origin.strip())
            origin_port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:  # "null": a sandboxed or file:// page
            return False
        default = 443 if parts.scheme == "https" else 80
        name = host_name(url_host(parts.hostname))
        if name == host_name(host) and (origin_port or default) == (host_port(host) or default):
            return True
        return name in self.allowed_origins

    def _authorized(self, environ: dict[str, Any]) -> bool:
        scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
        if scheme.lower() == "bearer" and _equal(credentials.strip(), self.token or ""):
            return True
        for pair in environ.get("HTTP_COOKIE", "").split(";"):
            key, _, value = pair.strip().partition("=")
            if key == self.cookie_name and _equal(value.strip(), self._cookie):
                return True
        return False

    def _remember(self, environ: dict[str, Any], query: list[tuple[str, str]], start_response: Callable) -> list[bytes]:
        """The token was right: set the cookie and send the browser to the same URL without it."""
        path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/:@!$&'()*+,;=-._~", encoding="latin-1")
        location = "/" + path.lstrip("/")  # never "//other.site": a path on this server
        rest = urlencode([(k, v) for k, v in query if k != "token"])
        if rest:
            location += "?" + rest
        cookie = f"{self.cookie_name}={self._cookie}; Path=/; HttpOnly; SameSite=Strict"
        return _text(start_response, "303 See Other", f"see {location}", [("Location", location), ("Set-Cookie", cookie)])

    def _warn(self, host: str) -> None:
        with self._lock:
            if host in self._refused or len(self._refused) >= _MAX_WARNINGS:
                return
            self._refused.add(host)
        shown = ascii(host[:100]) if host else "(none)"
        print(
            f"hpo: warning: refused a request with Host {shown}: not a name of this server "
            "(--allow-host NAME accepts a name a reverse proxy or DNS uses)",
            file=sys.stderr,
            flush=True,
        )


def _rank(key: Any) -> int:
    for i, first in enumerate(OUTCOME_FIRST):
        if key == first or (first.endswith("_") and isinstance(key, str) and key.startswith(first)):
            return i
    return len(OUTCOME_FIRST)


def _one_line(value: Any) -> Any:
    """A JSON object or list as optuna-dashboard shows it (``json.dumps``), without the spaces a
    table cell wraps at; any other value (a string, a truncated JSON text) as it is."""
    if not isinstance(value, str) or value[:1] not in ("{", "["):
        return value
    try:
        return json.dumps(json.loads(value), separators=(",", ":"))
    except ValueError:
        return value


def outcome_first(detail: dict[str, Any]) -> dict[str, Any]:
    """optuna-dashboard's study data (``GET /api/studies/ID``) with each trial's user attributes,
    and the trial table's user-attribute columns, in :data:`OUTCOME_FIRST` order, then as stored;
    JSON values on one line (:func:`_one_line`)."""
    for key in ("trials", "best_trials"):
        for trial in detail.get(key) or ():
            attrs = trial.get("user_attrs") if isinstance(trial, dict) else None
            if isinstance(attrs, list) and all(isinstance(a, dict) for a in attrs):
                trial["user_attrs"] = [
                    {**a, "value": _one_line(a.get("value"))} for a in sorted(attrs, key=lambda a: _rank(a.get("key")))
                ]
    union = detail.get("union_user_attrs")
    if isinstance(union, list) and all(isinstance(a, dict) for a in union):
        detail["union_user_attrs"] = sorted(union, key=lambda a: _rank(a.get("key")))
    return detail


class OutcomeFirst:
    """WSGI middleware over optuna-dashboard's app: its study data passes through :func:`outcome_first`.

    optuna-dashboard lists a trial's user attributes in the order the storage returns them (by
    key in SQLite) in a box six lines high, and as table columns as narrow as their names: by
    key, ``stop_reason`` is a trial's 13th attribute, out of sight, and a JSON value wraps at
    every space into a table row several lines high.
    """

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() != "GET" or not _STUDY_DETAIL.fullmatch(environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        started: list[Any] = []
        chunks: list[bytes] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            started[:] = [status, headers, exc_info]
            return chunks.append

        body = self.app(environ, hold)
        try:
            chunks.extend(body)
        finally:
            if hasattr(body, "close"):
                body.close()
        status, headers, exc_info = started
        data = b"".join(chunks)
        json_body = any(k.lower() == "content-type" and v.startswith("application/json") for k, v in headers)
        if status.startswith("200") and json_body:
            try:
                detail = json.loads(data)
            except ValueError:
                detail = None
            if isinstance(detail, dict):
                data = json.dumps(outcome_first(detail)).encode()
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"] + [("Content-Length", str(len(data)))]
        start_response(status, headers, exc_info)
        return [data]


def guard(app: Callable, host: str, sock: socket.socket, *, token: str | None = None, allow: Iterable[str] = ()) -> Guard:
    """``app`` guarded for a server on ``sock`` (from :func:`bind`), bound for ``--host host``
    with ``--allow-host`` names ``allow``."""
    bound, port = sock.getsockname()[:2]
    address = _address(bound)
    return Guard(
        app,
        allowed_names(host, bound, allow),
        port,
        token=token,
        any_local_address=address is not None and address.is_unspecified,
        allowed_origins=allow,
    )


def loopback(sock: socket.socket) -> bool:
    """Whether ``sock`` is bound to a loopback address (reachable from this machine only)."""
    address = _address(sock.getsockname()[0])
    return address is not None and address.is_loopback


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not listening yet: :func:`listen`), or a one-line error
    naming them.  Binding first takes the port before anything else is done.

    The socket never sets ``SO_REUSEPORT``, so no other server can listen on the port beside it
    and it cannot join one that does (gRPC sets it).  ``SO_REUSEADDR`` is set on Linux only, where
    it lets a restarted server take a port whose old connections linger in ``TIME_WAIT`` but never
    lets two sockets listen on one port; elsewhere it can mean more."""
    where = f"{url_host(host)}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise HpoError(f"cannot listen on {where}: unknown host ({e.strerror})") from None
    except UnicodeError:
        raise HpoError(f"cannot listen on {where}: not a host name") from None
    family, kind, protocol, _, address = infos[0]
    sock = socket.socket(family, kind, protocol)
    try:
        if sys.platform.startswith("linux"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise HpoError(f"cannot listen on {where}: {e.strerror or e}") from None
    return sock


def listen(sock: socket.socket, host: str) -> None:
    """Listen on ``sock`` (from :func:`bind` for ``host``); a one-line error if another socket
    bound to the port started listening first."""
    try:
        sock.listen(64)
    except OSError as e:
        raise HpoError(f"cannot listen on {url_host(host)}:{sock.getsockname()[1]}: {e.strerror or e}") from None


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: a request line can carry ?token=

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["hpo.local_address"] = self.connection.getsockname()[0]
        return environ


class _Server(ThreadingMixIn, WSGIServer):
    """wsgiref's server, a thread per request, on a socket bound and listening already."""

    daemon_threads = True

    def __init__(self, sock: socket.socket, app: Callable) -> None:
        super().__init__(sock.getsockname(), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        self.server_name = str(self.server_address[0])  # no name lookup
        self.server_port = self.server_address[1]
        self.setup_environ()
        self.set_app(app)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a client that went away
            super().handle_error(request, client_address)


def serve(sock: socket.socket, app: Callable, signals: Signals) -> NoReturn:
    """Serve ``app`` on ``sock`` (listening, see :func:`listen`) until a signal comes (its
    ``KeyboardInterrupt`` is raised then, see :meth:`hpo.worker.Signals.until_signal`); the
    socket is closed then."""
    server = _Server(sock, app)
    server.timeout = 0.5  # each handle_request() returns within it
    try:
        signals.until_signal(server.handle_request)
    finally:
        server.server_close()
