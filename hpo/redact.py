"""Storage passwords kept out of everything hpo shows.

A storage URL can carry a secret in several places, and the user, SQLAlchemy and the database
driver do not always read it alike:

* The userinfo, ``SCHEME://USER:PASSWORD@HOST``.  SQLAlchemy (:func:`sqlalchemy.engine.make_url`)
  ends the password at the first ``@``: a password typed with a raw ``@`` (``u:p@ss@host``)
  reaches the driver as the password ``p`` and the host ``ss@host``, which the driver then names
  in its error.  Here the password runs to the *last* ``@`` of the URL, and what SQLAlchemy
  read from before that ``@`` is secret too: the host, port, database and query it found there,
  and each run of the password between separators (``@ , : / ? & = ; #`` and blanks), which a
  driver may name one by one (libpq reads ``a,b`` as two hosts).  So a raw ``@`` in a query value
  (``?application_name=me@box``) hides the URL up to it: write it ``%40``.
* The query: ``?password=`` (psycopg2 and PyMySQL take it), and every key that names a password,
  a secret, a token or a DSN (``passwd``, ``sslpassword``, ``dsn``, ...).
* A URL SQLAlchemy cannot read (no ``SCHEME://``, a misspelt scheme): everything between the
  first ``:`` after the scheme's ``//`` (or the start) and the last ``@``.

Where SQLAlchemy reads the URL, the parts are found with SQLAlchemy's own pattern and checked
against :func:`~sqlalchemy.engine.make_url`; if they disagree, the conservative reading above is
used.  Each secret is hidden in every form text can carry it: as typed, percent-decoded (what
the driver gets), percent-encoded (``quote``, ``quote_plus``, SQLAlchemy's rendering) and escaped
as ``repr``, ``ascii`` and JSON write it.

:func:`mask_url` shows a URL with each secret replaced by ``***``, whatever its length.  Free
text -- error lines, ``--debug`` tracebacks, log records, warnings and, once :func:`guard_streams`
ran, every write to ``sys.stdout`` and ``sys.stderr`` -- is scrubbed of the forms of every
secret :func:`register_url` was given that are at least :data:`MIN_SCRUB` characters long.  A one-
or two-character string also occurs in ordinary words and numbers: replacing each occurrence
would wreck the output and protect a password anyone can guess anyway.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
import sys
import threading
import warnings
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

__all__ = [
    "MIN_SCRUB",
    "guard_streams",
    "host_of",
    "mask_url",
    "one_line",
    "register_argv",
    "register_url",
    "scrub",
    "secrets_of",
]

MIN_SCRUB = 3  # shortest secret form replaced in free text (the URL itself is always masked)
MASK = "***"

# The pattern of ``sqlalchemy.engine.url._parse_url`` (SQLAlchemy 2.x), with a group around the
# userinfo so that its end is known.  make_url checks every reading (see _sqlalchemy_agrees).
_SQLALCHEMY_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?P<userinfo>
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)
_SCHEME = re.compile(r"[\w+.-]*:?//")  # where an unreadable URL's authority begins
_QUERY_ITEM = re.compile(r"([^?&=]*)=([^&]*)")
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|dsn", re.IGNORECASE)
_SEPARATORS = frozenset("@,:/?&=;# \t")
_DSN_PASSWORD = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class _Reading:
    masked: str
    secrets: frozenset[str]
    host: str


def _sqlalchemy_agrees(m: re.Match[str], url: str) -> bool:
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except ValueError:  # the port is no number: SQLAlchemy read these same parts, then int() failed
        return True
    except Exception:  # noqa: BLE001 - any other refusal: SQLAlchemy reads it otherwise
        return False
    password = unquote(m["password"]) if m["password"] is not None else None
    database = unquote(m["database"]) if m["database"] is not None else None
    return (parsed.password, parsed.host, parsed.database) == (password, m["ipv4host"] or m["ipv6host"], database)


def _query_secrets(url: str, start: int) -> tuple[list[tuple[int, int]], set[str]]:
    """Values of secret keys after ``start``, at each ``?`` and ``&`` (a key may follow a ``?``
    that SQLAlchemy reads as part of a value: hiding it too costs nothing)."""
    spans, found = [], set()
    for sep in re.finditer(r"[?&]", url[start:]):
        item = _QUERY_ITEM.match(url, start + sep.end())
        if item is None or not item[2] or not _SECRET_KEY.search(unquote_plus(item[1])):
            continue
        spans.append(item.span(2))
        found.add(item[2])
        for inner in _DSN_PASSWORD.finditer(unquote_plus(item[2])):
            found.add(inner[1].strip("'"))
    return spans, found


@functools.lru_cache(maxsize=64)
def _read(url: str) -> _Reading:
    if "@" not in url and not _SECRET_KEY.search(url):  # no userinfo and no secret key: nothing to hide
        m = _SQLALCHEMY_URL.match(url)
        begin = m.end("name") + 3 if m else (_SCHEME.match(url).end() if _SCHEME.match(url) else 0)
        return _Reading(url, frozenset(), _host_at(url, begin))
    spans: list[tuple[int, int]] = []
    secrets: set[str] = set()
    m = _SQLALCHEMY_URL.match(url)
    if m is not None and not _sqlalchemy_agrees(m, url):
        m = None
    if m is not None:
        host_start = m.end("userinfo") if m["userinfo"] is not None else m.end("name") + 3
        if m["password"] is not None:
            start, end = m.span("password")
            last = url.rfind("@")
            if last > end:  # a raw "@" in the password: SQLAlchemy read the rest as host, port, ...
                for group in ("ipv6host", "ipv4host", "port", "database", "query"):
                    if m[group] is not None and m.start(group) < last:
                        secrets.add(m[group])
                if m["query"] is not None and m.start("query") < last:
                    secrets.update(item.partition("=")[2] for item in m["query"].split("&"))
                secrets |= _pieces(url[start:last])
                end, host_start = last, last + 1
            spans.append((start, end))
            secrets.update((url[start:end], m["password"]))
    else:
        scheme = _SCHEME.match(url)
        begin = scheme.end() if scheme else 0
        last = url.rfind("@")
        host_start = begin
        if last >= begin:
            userinfo = url[begin:last]
            colon = userinfo.find(":")
            if colon >= 0:  # which ":" ends the user name is anyone's guess: every reading is secret
                spans.append((begin + colon + 1, last))
                secrets.update(userinfo[i + 1 :] for i, c in enumerate(userinfo) if c == ":")
            host_start = last + 1
    query_spans, query_secrets = _query_secrets(url, host_start)
    spans += query_spans
    secrets |= query_secrets
    secrets.discard("")
    frozen = frozenset(secrets)
    return _Reading(_masked(url, spans), frozen, _replace(_host_at(url, host_start), _scrubbed_forms(frozen)))


def _pieces(password: str) -> set[str]:
    """The parts of a password that SQLAlchemy split into host, port, database and query, as a
    driver may split and name them again (libpq: one host per ","): every run of it that starts
    and ends at a separator or at its ends."""
    cuts = [i for i, c in enumerate(password) if c in _SEPARATORS]
    starts, ends = [0, *(i + 1 for i in cuts)], [*cuts, len(password)]
    return {password[a:b] for a in starts for b in ends if b - a >= MIN_SCRUB}


def _host_at(url: str, start: int) -> str:
    return re.match(r"[^/?]*", url[start:]).group(0) or "localhost"


def mask_url(url: str) -> str:
    """``url`` with every secret it carries replaced by ``***``: the password (also one that holds
    a raw ``@``, ``:`` or ``/``), a ``?password=`` and other secret query values, and the userinfo
    of URLs SQLAlchemy cannot read."""
    return _read(url).masked


def secrets_of(url: str) -> frozenset[str]:
    """The secrets ``url`` carries, each as it is written there (see the module docstring)."""
    return _read(url).secrets


def host_of(url: str) -> str:
    """``HOST[:PORT]`` of ``url`` for error messages: what follows the hidden userinfo."""
    return _read(url).host


def _forms(secret: str) -> set[str]:
    found = set()
    for text in {secret, unquote(secret), unquote_plus(secret)}:
        found |= {text, quote(text, safe=""), quote(text), quote(text, safe=" +"), quote_plus(text)}
        found |= {repr(text)[1:-1], ascii(text)[1:-1], json.dumps(text)[1:-1]}
        found.add(repr(text.encode("utf-8", "backslashreplace"))[2:-1])
    return found


@functools.lru_cache(maxsize=64)
def _scrubbed_forms(secrets: frozenset[str]) -> tuple[str, ...]:
    forms = {form for secret in secrets for form in _forms(secret) if len(form) >= MIN_SCRUB}
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))  # longest first: a password before its pieces


_LOCK = threading.Lock()
_registered: frozenset[str] = frozenset()  # secrets
_urls: tuple[tuple[str, str], ...] = ()  # (URL as given, as shown), longest first


def scrub(text: str, url: str | None = None, *, secrets: Iterable[str] = ()) -> str:
    """``text`` with every registered URL, and ``url``, replaced by its masked form, then every
    form of the registered secrets, of ``url``'s and of ``secrets`` by ``***`` (forms shorter
    than :data:`MIN_SCRUB` characters stay).  Where forms overlap (a password and the host
    SQLAlchemy read from its end), their union is hidden."""
    urls = _urls
    if url and len(url) >= MIN_SCRUB and all(raw != url for raw, _ in urls):
        urls = tuple(sorted((*urls, (url, mask_url(url))), key=lambda pair: -len(pair[0])))
    for raw, shown in urls:
        if raw in text:
            text = text.replace(raw, shown)
    extra = set(secrets) | (secrets_of(url) if url else set())
    return _replace(text, _scrubbed_forms(_registered | extra if extra - _registered else _registered))


def _merged(spans: Iterable[tuple[int, int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _masked(text: str, spans: Iterable[tuple[int, int]]) -> str:
    out, done = [], 0
    for start, end in _merged(spans):
        out += [text[done:start], MASK]
        done = end
    out.append(text[done:])
    return "".join(out)


def _replace(text: str, forms: tuple[str, ...]) -> str:
    spans = []
    for form in forms:
        at = text.find(form)
        while at >= 0:
            spans.append((at, at + len(form)))
            at = text.find(form, at + 1)
    return _masked(text, spans) if spans else text


def one_line(text: str, url: str) -> str:
    """The first line of ``text`` (a driver's message), scrubbed of ``url``'s secrets."""
    stripped = text.strip()
    return scrub(stripped.splitlines()[0] if stripped else text, url)


def register_url(url: str | None) -> None:
    """From now on, scrub ``url``'s secrets from free text: :func:`scrub`, every log record (of
    any logger, whatever its handler), every warning and the guarded streams."""
    global _registered, _urls
    new = secrets_of(url) - _registered if url else frozenset()
    if not new:
        return
    with _LOCK:
        _registered = _registered | new
        if len(url) >= MIN_SCRUB:
            _urls = tuple(sorted((*_urls, (url, mask_url(url))), key=lambda pair: -len(pair[0])))
    _install_hooks()


def register_argv(argv: Sequence[str]) -> None:
    """Register every storage URL on a command line: ``--storage URL``, ``--storage=URL`` (or an
    abbreviation argparse accepts), and any argument holding ``://``, wherever it stands."""
    for i, arg in enumerate(argv):
        option, eq, value = arg.partition("=")
        if eq and len(option) > 4 and "--storage".startswith(option):
            register_url(value)
        elif len(arg) > 4 and "--storage".startswith(arg) and i + 1 < len(argv):
            register_url(argv[i + 1])
        elif "://" in arg:
            register_url(arg)


_hooks_installed = False


def _install_hooks() -> None:
    global _hooks_installed
    with _LOCK:
        if _hooks_installed:
            return
        _hooks_installed = True
    make_record = logging.getLogRecordFactory()

    def scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if _registered:
            _scrub_record(record)
        return record

    logging.setLogRecordFactory(scrubbed_record)
    format_warning = warnings.formatwarning

    def scrubbed_warning(*args: Any, **kwargs: Any) -> str:
        return scrub(format_warning(*args, **kwargs))

    warnings.formatwarning = scrubbed_warning


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record: logging reports it when it emits it
        return
    clean = scrub(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


class _ScrubbedStream:
    """A text stream whose writes are scrubbed; everything else (``flush``, ``isatty``,
    ``fileno``, ``encoding``, ``buffer``, ...) is the stream's own, so tqdm, logging and child
    processes that inherit the file descriptor see the real stream."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text) if _registered and isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_streams() -> None:
    """Scrub the registered secrets from every later write to ``sys.stdout`` and ``sys.stderr``:
    the last line of defence, for whatever prints text hpo did not build (tracebacks, a
    library's print).  A write is scrubbed as one piece."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _ScrubbedStream):
            setattr(sys, name, _ScrubbedStream(stream))
