"""hpo from Python: :func:`load_config`, :func:`optimize`, :func:`report`.

The same study loop, artifacts and records as ``python -m hpo.run study`` and ``report``,
returning to the caller.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hpo.config import StudyConfig, apply_overrides, parse_config, read_config

__all__ = ["load_config"]


def load_config(source: str | Path | Mapping[str, Any] | StudyConfig, overrides: Sequence[str] = ()) -> StudyConfig:
    """A validated :class:`~hpo.config.StudyConfig` from a study file (TOML or JSON), a dict of
    its tables, or a config to change; ``overrides`` are ``"section.key=VALUE"`` items as for
    ``--set``.  Bad input raises :class:`hpo.ConfigError` naming the source, key and value."""
    from hpo.search import check_config

    if isinstance(source, StudyConfig):
        return check_config(source.with_overrides(*overrides))
    if isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
        overridden = apply_overrides(raw, overrides, "<dict>")
        name = str((raw.get("study") or {}).get("name", "hpo")) if isinstance(raw.get("study"), Mapping) else "hpo"
        return check_config(parse_config(raw, source="<dict>", default_name=name, overridden=overridden))
    return check_config(read_config(source, overrides))
