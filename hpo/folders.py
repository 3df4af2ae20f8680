"""Folders a command writes to, checked before anything is created (bad input writes nothing)."""

from __future__ import annotations

import os
from pathlib import Path

from hpo.errors import HpoError

__all__ = ["check_folder"]


def check_folder(path: str | os.PathLike, flag: str, *, writable: bool = True) -> None:
    """Bad input writes nothing: a folder a command will write to must exist or be creatable,
    checked before anything (the folder included) is created.  With ``writable=False`` an
    existing folder that cannot be written is not bad input (the artifact folder: that costs
    the artifacts, with a warning, not the trials)."""
    folder = Path(path)
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if existing == folder and not folder.is_dir():
        raise HpoError(f"{flag}: {str(folder)!r} is a file, not a folder")
    if not existing.is_dir():
        raise HpoError(f"{flag}: cannot create folder {str(folder)!r}: {str(existing)!r} is a file")
    if (writable or existing != folder) and not os.access(existing, os.W_OK | os.X_OK):
        raise HpoError(f"{flag}: cannot write to folder {str(existing)!r}")
