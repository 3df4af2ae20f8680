"""A storage password never shows, in any form a URL can carry it.

Passwords are generated over every printable ASCII character and a few beyond, and put in URLs
raw (also where SQLAlchemy reads them otherwise: a raw ``@``), percent-encoded and in
``?password=``.  The masked URL, the errors of :func:`hpo.storage.make_storage` (against a
closed port, a real PostgreSQL and a real MariaDB), ``--debug`` tracebacks, log records,
warnings and the guarded streams must hold no form of the password: not as typed, decoded,
encoded or escaped, and no piece of it five characters long.  Then the real command line.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote

import pytest

from hpo import redact
from hpo.errors import StorageError
from hpo.redact import MIN_SCRUB, mask_url, register_argv, register_url, scrub, secrets_of
from tests.conftest import MYSQL_ADMIN_URL, PG_ADMIN_URL, STUDIES, _service_missing, cli_env, free_port, run_cli

ALPHABET = "".join(map(chr, range(0x20, 0x7F))) + "éßø€漢字🔑\u00a0"
WINDOW = 5  # a piece of the password this long in any output is a leak


def generated(n: int, seed: int) -> list[str]:
    """Every character of ALPHABET twice inside a password of its own, then ``n`` random ones
    (8 to 16 characters, fixed seed)."""
    rng = random.Random(seed)
    out = [f"ab{c}cd{c}ef" for c in ALPHABET]
    out += ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(8, 16))) for _ in range(n)]
    return out


PASSWORDS = generated(200, seed=20240613)  # ~300 passwords, each in three places: ~900 URLs
# for the real servers: the characters URLs and drivers treat specially, and a few nasty ones
FEW = [f"ab{c}cd{c}ef" for c in "@:/?#%&=+ ,;'\"\\é"] + [
    "pa@ss-w0rd",
    "pa%40ss-w0rd",
    "x?password=yz1",
    "pa:ss:w0rd",
    "pa#ss@w0:rd",
]


def forms(pw: str, raw: bool = True) -> set[str]:
    """How a text may carry ``pw``: as typed, decoded as SQLAlchemy decodes a raw one, encoded,
    escaped."""
    out = set()
    for p in {pw, unquote(pw) if raw else pw}:
        out |= {p, quote(p, safe=""), quote(p), quote(p, safe=" +"), quote_plus(p), repr(p)[1:-1], json.dumps(p)[1:-1]}
    return {f for f in out if len(f) >= MIN_SCRUB}


def leaks(text: str, pw: str, raw: bool = True, public: str = "") -> list[str]:
    """The forms of ``pw`` in ``text``, and its pieces of WINDOW characters that are not in
    ``public`` (what the same command prints for another password: words of a traceback)."""
    found = [f for f in forms(pw, raw) if f in text]
    for p in {pw, unquote(pw) if raw else pw}:
        pieces = {p[i : i + WINDOW] for i in range(len(p) - WINDOW + 1)}
        found += sorted(w for w in pieces if w in text and w not in public)
    return found


def urls(pw: str, base: str) -> dict[str, tuple[str, str]]:
    """``pw`` raw, percent-encoded and in ``?password=`` of ``base`` ([SCHEME://]USER@HOST:PORT/DB);
    each with the URL as it must be shown."""
    scheme, sep, rest = base.partition("://") if "://" in base else ("", "", base)
    user, where = rest.split("@", 1)
    masked = f"{scheme}{sep}{user}:***@{where}"
    return {
        "raw": (f"{scheme}{sep}{user}:{pw}@{where}", masked),
        "encoded": (f"{scheme}{sep}{user}:{quote(pw, safe='')}@{where}", masked),
        "query": (f"{base}?password={quote_plus(pw)}", f"{base}?password=***"),
    }


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets registered by a test are forgotten after it (the hooks stay, with nothing to hide)."""
    monkeypatch.setattr(redact, "_registered", frozenset())
    monkeypatch.setattr(redact, "_urls", ())


# --------------------------------------------------------------------------------------------
# The URL shown, and free text, in process


@pytest.mark.parametrize("placement", ["raw", "encoded", "query"])
def test_masked_url_hides_every_generated_password(placement: str) -> None:
    from sqlalchemy.engine import make_url

    for pw in PASSWORDS:
        url, masked = urls(pw, "postgresql+psycopg2://postgres@127.0.0.1:5432/test")[placement]
        parsed = make_url(url)
        if placement == "encoded":  # the driver gets the password itself
            assert parsed.password == pw
        elif placement == "query":
            assert parsed.query["password"] == pw and parsed.password is None
        elif "@" not in pw:  # raw: SQLAlchemy reads it (decoding any %XX in it)
            assert parsed.password == unquote(pw)
        assert mask_url(url) == masked, pw
        assert secrets_of(url)


@pytest.mark.parametrize("placement", ["raw", "encoded", "query"])
def test_scrub_hides_every_form_a_driver_or_library_may_echo(placement: str) -> None:
    """What SQLAlchemy hands the driver (password, host, database, query values), the URL in
    every spelling, and the password escaped: all gone from free text."""
    from sqlalchemy.engine import make_url

    for pw in PASSWORDS:
        url, masked = urls(pw, "postgresql+psycopg2://postgres@127.0.0.1:5432/test")[placement]
        try:
            parsed = make_url(url)
            echoed = [
                str(parsed.host),
                str(parsed.database),
                str(parsed.password),
                repr(parsed),
                *map(str, parsed.query.values()),
            ]
        except ValueError:  # a raw "@" then ":" puts part of the password in the port
            echoed = []
        raw = placement == "raw"
        text = " | ".join([url, *sorted(forms(pw, raw)), repr(url), json.dumps(url), *echoed, f'host name "{pw}"', "end"])
        clean = scrub(text, url)
        assert not leaks(clean, pw, raw), (pw, clean)
        assert clean.startswith(masked) and clean.endswith("end")


def test_short_secrets_are_masked_in_urls_but_not_scrubbed_from_text() -> None:
    url = "postgresql+psycopg2://u:ab@h/db"
    assert mask_url(url) == "postgresql+psycopg2://u:***@h/db"
    assert scrub("a table of abc", url) == "a table of abc"
    assert scrub(f"cannot open {url}", url) == "cannot open postgresql+psycopg2://u:***@h/db"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg2://u:p@ss@host/db", "postgresql+psycopg2://u:***@host/db"),
        ("postgresql+psycopg2://u:p@s:s@host:5432/db", "postgresql+psycopg2://u:***@host:5432/db"),
        ("postgresql+psycopg2://u:p@s/s@host/db", "postgresql+psycopg2://u:***@host/db"),
        ("postgresql+psycopg2://u:p@s?s=1@host/db", "postgresql+psycopg2://u:***@host/db"),
        ("postgresql+psycopg2://me@corp:pw@host/db", "postgresql+psycopg2://me@corp:***@host/db"),
        ("postgresql+psycopg2://u@host/db?sslpassword=k3y&passwd=x&application_name=a", None),
        ("mysql+pymysql://root@h/db?dsn=host%3Dh+password%3Dsecret", "mysql+pymysql://root@h/db?dsn=***"),
        ("postgres:pw@ss@localhost/test", "postgres:***@localhost/test"),  # no scheme: SQLAlchemy cannot read it
        ("postgresql+psycopg2:/u:pw@h/db", "postgresql+psycopg2:***@h/db"),
        ("postgresql+psycopg2://u:pw@host/db?application_name=me@box", "postgresql+psycopg2://u:***@box"),  # documented
        ("sqlite:///studies/a:b@c.db", "sqlite:///studies/a:b@c.db"),  # a path, no password
        ("grpc://127.0.0.1:5000", "grpc://127.0.0.1:5000"),
    ],
)
def test_masked_url_of_hand_made_cases(url: str, masked: str | None) -> None:
    if masked is None:
        masked = "postgresql+psycopg2://u@host/db?sslpassword=***&passwd=***&application_name=a"
    assert mask_url(url) == masked


def test_command_line_urls_are_registered_wherever_they_stand() -> None:
    register_argv(["--storage=postgresql://u:first-pw@h/db"])
    register_argv(["--sto", "postgresql://u:second-pw@h/db"])
    register_argv(["list", "postgres:third-pw@h/db"])  # no "://" and no --storage: not a URL
    register_argv(["report", "x", "mysql+pymysql://root@h/db?password=fourth-pw"])
    text = scrub("first-pw second-pw third-pw fourth-pw")
    assert text == "*** *** third-pw ***"


# --------------------------------------------------------------------------------------------
# Log records, warnings, threads, the guarded streams


@pytest.fixture
def secret_url() -> tuple[str, str]:
    pw = "s3cr@t:/?#%40 é+" + uuid.uuid4().hex[:6]
    url = f"postgresql+psycopg2://u:{pw}@127.0.0.1:1/db"
    register_url(url)
    return url, pw


def test_log_records_of_any_logger_and_handler_are_scrubbed(secret_url: tuple[str, str]) -> None:
    url, pw = secret_url
    out = io.StringIO()
    handler = logging.StreamHandler(out)  # made after the URL was registered, on no logger hpo knows
    loggers = [
        logging.getLogger(f"somewhere.{uuid.uuid4().hex}"),
        logging.getLogger("optuna.storages._rdb.x"),
        logging.getLogger(),
    ]
    for logger in loggers:
        logger.addHandler(handler)
        old = logger.level
        logger.setLevel(logging.INFO)
        try:
            logger.warning("engine %s", url)
            logger.info("password %r, %s", pw, quote_plus(pw))
            try:
                raise RuntimeError(f"could not translate host name {pw!r}")
            except RuntimeError:
                logger.exception("failed")
            logger.warning("stack", stack_info=True, extra={"unrelated": pw})
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old)
    text = out.getvalue()
    assert text.count("engine postgresql+psycopg2://u:***@127.0.0.1:1/db") == 3
    assert "RuntimeError: could not translate host name" in text
    assert not leaks(text, pw), text


def test_warnings_are_scrubbed(secret_url: tuple[str, str]) -> None:
    """Python's own warning output and logging's captured warnings (a subprocess: pytest records
    warnings its own way)."""
    url, pw = secret_url
    code = (
        "import logging, sys, warnings\n"
        "from hpo.redact import register_url\n"
        "register_url(sys.argv[1])\n"
        "warnings.warn(f'cannot reach {sys.argv[1]} ({sys.argv[2]})', UserWarning)\n"
        "logging.basicConfig()\n"
        "logging.captureWarnings(True)\n"
        "warnings.warn(f'captured {sys.argv[2]}', DeprecationWarning)\n"
    )
    out = subprocess.run([sys.executable, "-W", "always", "-c", code, url, pw], env=cli_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "cannot reach postgresql+psycopg2://u:***@127.0.0.1:1/db (***)" in out.stderr and "captured ***" in out.stderr
    assert not leaks(out.stderr, pw), out.stderr


def test_heartbeat_thread_errors_are_one_line_without_password(capsys: pytest.CaptureFixture[str]) -> None:
    import sqlalchemy.exc

    from hpo.worker import _one_line_thread_errors

    pw = "hb@pw:" + uuid.uuid4().hex[:6]
    url = f"postgresql+psycopg2://u:{pw}@127.0.0.1:1/db"
    previous = threading.excepthook
    try:
        _one_line_thread_errors(url)

        def beat() -> None:
            orig = RuntimeError(f'could not translate host name "{pw.split("@")[1]}@127.0.0.1"\nsecond line {pw}')
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, orig)

        thread = threading.Thread(target=beat)
        thread.start()
        thread.join()
    finally:
        threading.excepthook = previous
    err = capsys.readouterr().err
    assert err.startswith("hpo: heartbeat to postgresql+psycopg2://u:***@127.0.0.1:1/db failed: could not translate host name")
    assert err.count("\n") == 1 and not leaks(err, pw), err


def test_guarded_stream_scrubs_and_is_otherwise_the_stream(secret_url: tuple[str, str], tmp_path: Path) -> None:
    """flush, isatty, fileno, encoding pass through (tqdm and logging use them); a child process
    given the stream writes to its file descriptor."""
    from tqdm import tqdm

    url, pw = secret_url
    with open(tmp_path / "out.txt", "w", encoding="utf-8") as f:
        guarded = redact._ScrubbedStream(f)
        assert guarded.fileno() == f.fileno() and guarded.encoding == "utf-8" and guarded.isatty() is False
        print(f"url {url}", file=guarded, flush=True)
        guarded.writelines([f"{pw}\n", f"{quote(pw)}\n"])
        tqdm.write(f"tqdm {pw}", file=guarded)
        for _ in tqdm(range(3), file=guarded, desc=pw, mininterval=0):
            pass
        logging.StreamHandler(guarded).handle(logging.makeLogRecord({"msg": f"record {pw}"}))
        guarded.flush()
        subprocess.run([sys.executable, "-c", "print('child')"], stdout=guarded, check=True)
    text = (tmp_path / "out.txt").read_text(encoding="utf-8")
    assert "url postgresql+psycopg2://u:***@127.0.0.1:1/db" in text and "tqdm ***" in text and "child" in text
    assert not leaks(text, pw), text


# --------------------------------------------------------------------------------------------
# make_storage's errors: a closed port, a real PostgreSQL, a real MariaDB


def debug_text(error: BaseException, url: str, capsys: pytest.CaptureFixture[str]) -> str:
    """What ``--debug`` prints for ``error``: the traceback with the driver's error behind it."""
    from hpo.cli import _print_traceback

    capsys.readouterr()
    _print_traceback(error, argparse.Namespace(storage=url))
    text = capsys.readouterr().err
    assert text.startswith("Traceback") and "StorageError" in text
    return text


def server(admin_url: str, what: str) -> tuple[str, str, int]:
    from sqlalchemy.engine import make_url

    parsed = make_url(admin_url)
    try:
        socket.create_connection((parsed.host, parsed.port), timeout=3).close()
    except OSError as e:
        _service_missing(f"{what} at {parsed.host}:{parsed.port}", e)
    return parsed.username, parsed.host, parsed.port


def check_errors(base: str, passwords: list[str], capsys: pytest.CaptureFixture[str], *expect: str) -> None:
    from hpo.storage import make_storage

    def error(url: str) -> tuple[str, str]:
        with pytest.raises(StorageError) as caught:
            make_storage(url, mode="read")
        return str(caught.value), debug_text(caught.value, url, capsys)

    public = "".join("".join(error(url)) for url, _ in urls("Zq9-Zq9", base).values())
    for pw in passwords:
        for placement, (url, masked) in urls(pw, base).items():
            line, debug = error(url)
            assert "\n" not in line and masked in line, (pw, line)
            if placement != "raw" or ("@" not in pw and unquote(pw) == pw):
                assert any(e in line for e in expect), line  # the password reached the server (or the closed port)
            for text in (line, debug):
                assert not leaks(text, pw, placement == "raw", public), (pw, placement, text[-3000:])


def test_make_storage_errors_against_a_closed_port(capsys: pytest.CaptureFixture[str]) -> None:
    base = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/test"
    check_errors(base, PASSWORDS[::3], capsys, "Connection refused")


def test_make_storage_errors_against_postgresql(capsys: pytest.CaptureFixture[str]) -> None:
    user, host, port = server(PG_ADMIN_URL, "PostgreSQL")
    base = f"postgresql+psycopg2://{user}@{host}:{port}/hpo_absent_{uuid.uuid4().hex[:8]}"
    check_errors(base, PASSWORDS[1::10] + FEW, capsys, "does not exist")  # trust authentication: the database is missing


def test_make_storage_errors_against_mariadb(capsys: pytest.CaptureFixture[str]) -> None:
    user, host, port = server(MYSQL_ADMIN_URL, "MariaDB")
    base = f"mysql+pymysql://{user}@{host}:{port}/test"
    check_errors(base, PASSWORDS[2::20] + FEW, capsys, "Access denied", "codec can't encode")  # PyMySQL: latin-1 only


# --------------------------------------------------------------------------------------------
# The command line, for real


def pg_absent() -> str:
    user, host, port = server(PG_ADMIN_URL, "PostgreSQL")
    return f"postgresql+psycopg2://{user}@{host}:{port}/hpo_absent_db"


def refused() -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/test"


def mariadb() -> str:
    user, host, port = server(MYSQL_ADMIN_URL, "MariaDB")
    return f"mysql+pymysql://{user}@{host}:{port}/test"


TINY = str(STUDIES / "tiny.toml")
# id, password, command line ({url} and {port} filled in), where the URL goes, the server, where the password goes
CLI = [
    ("list-raw-at", "pa@ss-w0rd", ("--debug", "list"), "--storage", pg_absent, "raw"),
    ("study-encoded-at", "pa%40ss-w0rd", ("--debug", "study", TINY), "HPO_STORAGE", refused, "raw"),
    ("report-colons", "pa:ss:w0rd", ("report", "nope", "--debug"), "--storage", mariadb, "raw"),
    ("dashboard-slashes", "pa/ss/w0rd", ("--debug", "dashboard", "--port", "{port}"), "HPO_STORAGE", pg_absent, "raw"),
    ("list-query", "x?password=yz1#é€ +", ("--debug", "list"), "--storage", pg_absent, "query"),
    ("study-query-encoded", "pa@ss&w0rd=%40", ("--debug", "study", TINY), "HPO_STORAGE", refused, "query"),
    ("dashboard-hash-at-colon", "pa#ss@w0:rd", ("--debug", "dashboard", "--port", "{port}"), "--storage", refused, "raw"),
    ("report-at-query", "pa@ss?password=w0rd", ("--debug", "report", "x"), "HPO_STORAGE", mariadb, "raw"),
    ("storage-before-command", "pa@ss-w0rd", ("--storage", "{url}", "list"), None, refused, "raw"),
    ("no-scheme", "pa@ss:w0rd", ("--debug", "list"), "--storage", lambda: "postgres@localhost/test", "raw"),
]


@pytest.mark.parametrize(("pw", "argv", "where", "base", "how"), [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_commands_never_print_the_password(
    pw: str, argv: tuple[str, ...], where: str | None, base, how: str, tmp_path: Path
) -> None:
    url, masked = urls(pw, base())[how]
    args = [a.replace("{url}", url).replace("{port}", str(free_port())) for a in argv]
    args += ["--storage", url] if where == "--storage" else []
    out = run_cli(*args, cwd=tmp_path, env=cli_env(**({"HPO_STORAGE": url} if where == "HPO_STORAGE" else {})), timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert last.startswith(("hpo: error: ", "python -m hpo.run: error: ")) and masked in last, text[-3000:]
    assert not leaks(text, pw, how == "raw", public=masked), text[-3000:]
    if "--debug" in argv:
        assert "Traceback (most recent call last)" in text
    assert list(tmp_path.iterdir()) == []
