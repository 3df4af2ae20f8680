"""Study names and other strings read from a storage: checked where they come in, escaped where
they are shown, and mapped to one safe folder name where they become a path.

In a shared storage anyone can name a study, so a name is never trusted: it cannot choose a
folder outside the one the user gave (``..``, ``/``, an absolute path), move the cursor or forge a
line on a terminal (ANSI escapes, ``\\r``), or make a path too long for the file system.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from hpo.errors import ConfigError, HpoError

__all__ = [
    "MAX_NAME_LENGTH",
    "check_new_name",
    "check_study_name",
    "folder_name",
    "md_code",
    "md_text",
    "name_folder",
    "name_problem",
    "new_name_problem",
    "printable",
]

MAX_NAME_LENGTH = 512  # Optuna's study_name column is String(512)
FOLDER_NAME_LENGTH = 80  # characters of a name kept in a folder name (file systems allow 255 bytes)
_HASH_LENGTH = 12  # hex digits of the name's SHA-256 appended to a folder name that is not the name
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_HASHED = re.compile(rf"-[0-9a-f]{{{_HASH_LENGTH}}}$")


def printable(text: object) -> str:
    """``text`` with every non-printable character escaped as Python does (``\\x1b``, ``\\n``,
    ``\\u202e``), so it shows on one line and cannot drive a terminal; printable text is unchanged."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as a study name to look up (None: nothing): it must be a
    non-empty string without NUL (no database accepts one).  Existing names may be long or hold
    any other character; they are only escaped when shown."""
    if not isinstance(name, str) or not name.strip():
        return f"must be a non-empty string, but got {printable(repr(name))[:100]}"
    if "\x00" in name:
        return f"must not contain a NUL character, but got {_short(name)}"
    return None


def new_name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as the name of a study hpo may create (None: nothing): it must
    be a non-empty string of at most :data:`MAX_NAME_LENGTH` printable characters (no control
    characters or ANSI escapes)."""
    problem = name_problem(name)
    if problem is not None:
        return problem
    if len(name) > MAX_NAME_LENGTH:
        return f"a study name has at most {MAX_NAME_LENGTH} characters, but got {len(name)}: {_short(name)}"
    if not name.isprintable():
        bad = next(ch for ch in name if not ch.isprintable())
        return f"must be printable, but got {_short(name)} (holds {printable(bad)})"
    return None


def check_study_name(name: object, what: str = "STUDY_NAME") -> str:
    """``name`` if :func:`name_problem` finds nothing, else a :class:`~hpo.errors.ConfigError` about ``what``."""
    problem = name_problem(name)
    if problem is not None:
        raise ConfigError(problem, key=what)
    return name


def check_new_name(name: object, what: str = "--study-name") -> str:
    """``name`` if :func:`new_name_problem` finds nothing, else a :class:`~hpo.errors.ConfigError` about ``what``."""
    problem = new_name_problem(name)
    if problem is not None:
        raise ConfigError(problem, key=what)
    return name


def _short(name: str, keep: int = 60) -> str:
    shown = repr(name[:keep])
    return shown + "..." if len(name) > keep else shown


def folder_name(name: str) -> str:
    """One safe path component for ``name``: ``[A-Za-z0-9._-]`` only, no leading dot or dash, at
    most ~100 characters.  A name that had to change gets ``-`` and a hash of the whole name appended,
    so two different names never share a folder; a name that needs no change is its own folder."""
    safe = _UNSAFE.sub("_", name)
    if not safe or safe.startswith((".", "-")):  # no hidden folder, no ".." and no name an option could be taken for
        safe = "_" + safe[1:]
    if name and safe == name and len(name) <= FOLDER_NAME_LENGTH and not _HASHED.search(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LENGTH]
    return f"{safe[:FOLDER_NAME_LENGTH]}-{digest}"


def name_folder(parent: str | os.PathLike, name: str, flag: str) -> Path:
    """``parent/FOLDER`` for the study ``name`` (:func:`folder_name`), checked to lie inside ``parent``."""
    parent = Path(parent)
    path = parent / folder_name(name)
    inside = Path(os.path.realpath(parent))
    if Path(os.path.realpath(path)).parent != inside:  # a symbolic link placed there leads elsewhere
        raise HpoError(
            f"{flag}: {str(path)!r} (the folder of study {_short(name)}) leads out of {str(parent)!r}: pass {flag} DIR"
        )
    return path


# markup a stored string could start: code, emphasis (``_`` only at a word's edge), links, HTML, table cells
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|~&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def md_text(text: object) -> str:
    """``text`` for markdown prose or a table cell: on one line, its markup characters escaped
    (it shows as text, never as markup or HTML); numbers and ``snake_case`` words are unchanged."""
    return _MD_SPECIAL.sub(r"\\\1", printable(text))


def md_code(text: object) -> str:
    """``text`` as a markdown code span, whatever backticks it holds."""
    text = printable(text)
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"
