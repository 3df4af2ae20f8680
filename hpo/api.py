"""hpo from Python: :func:`load_config`, :func:`optimize`, :func:`report`.

The same study loop, artifacts and records as ``python -m hpo.run study`` and ``report``,
returning to the caller.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hpo.config import StudyConfig, apply_overrides, parse_config, read_config
from hpo.errors import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, HpoError

__all__ = ["compare", "load_config", "optimize", "report"]


def load_config(source: str | Path | Mapping[str, Any] | StudyConfig, overrides: Sequence[str] = ()) -> StudyConfig:
    """A validated :class:`~hpo.config.StudyConfig` from a study file (TOML or JSON), a dict of
    its tables, or a config to change; ``overrides`` are ``"section.key=VALUE"`` items as for
    ``--set``.  Bad input raises :class:`hpo.ConfigError` naming the source, key and value."""
    from hpo.search import check_config

    if isinstance(source, StudyConfig):  # as given (a dataclasses.replace()d copy too), unless changed here
        return check_config(source.with_overrides(*overrides) if overrides else source)
    if isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
        overridden = apply_overrides(raw, overrides, "<dict>")
        return check_config(parse_config(raw, source="<dict>", default_name="hpo", overridden=overridden))
    return check_config(read_config(source, overrides))


def optimize(
    cfg: StudyConfig | str | Path | Mapping[str, Any],
    *,
    storage: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    artifact_dir: str | Path | None = None,
    artifacts: bool = True,
    workers: int = 1,
    progress: bool = True,
) -> Any:
    """Run trials of a study as ``python -m hpo.run study`` does and return the
    :class:`optuna.Study`.

    ``storage`` is a URL (default ``$HPO_STORAGE``, else ``sqlite:///studies/hpo.db``);
    ``n_trials`` and ``timeout`` default to the study file's.  With ``study.recycle_after`` > 0
    (the default) or ``workers`` > 1 the trials run in worker processes that this call starts
    and waits for, so the caller's memory does not grow with the trials; with
    ``recycle_after = 0`` and one worker they run in this process.  Ctrl-C stops the workers as
    it stops the command (the running trial is re-queued) and raises :class:`KeyboardInterrupt`.
    """
    import optuna

    from hpo.config import check_run
    from hpo.launch import run_workers
    from hpo.storage import make_storage, resolve_url
    from hpo.worker import WorkerSpec, handling_signals, run_worker

    cfg = load_config(cfg)
    if study_name is not None:
        from hpo.names import check_new_name

        check_new_name(study_name, "optimize(study_name=...)")
    check_run(workers=workers)
    url = resolve_url(storage)
    spec = WorkerSpec(
        study_name=study_name,
        n_trials=n_trials,
        timeout=timeout,
        artifacts=artifacts,
        artifact_dir=None if artifact_dir is None else str(Path(artifact_dir).absolute()),
        progress=progress,
    )
    # SIGINT and SIGTERM handled as the command handles them, in this process or its workers'
    # parent, also when the caller inherited SIGINT as ignored (a shell's background job)
    with handling_signals() as signals:
        if workers == 1 and not cfg.study.recycle_after:
            result = run_worker(cfg, url, spec, signals)
            code, name = result.code, result.study_name
        else:
            with tempfile.TemporaryDirectory(prefix="hpo-study-") as tmp:
                path = Path(tmp) / "study.json"  # what the worker processes read: the config as given
                path.write_text(json.dumps(dict(cfg.raw)), encoding="utf-8")
                spec = dataclasses.replace(spec, study_file=str(path))
                code, name = run_workers(cfg, url, spec, workers, quiet_start=workers == 1)
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        raise KeyboardInterrupt
    if code == EXIT_FAILURES:
        raise HpoError(f"study {name!r} stopped: study.max_consecutive_failures trials in a row failed (see above)")
    if code != EXIT_OK:
        raise HpoError(f"study {name!r}: a worker stopped on an error (see above)")
    return optuna.load_study(study_name=name, storage=make_storage(url))


def report(
    study_name: str,
    *,
    storage: str | None = None,
    out: str | Path | None = None,
    artifact_dir: str | Path | None = None,
    top: int = 4,
) -> dict[str, Any]:
    """Write ``trials.csv``, ``summary.md`` and the figures of a study into ``out`` (default
    ``reports/STUDY_NAME``), as ``python -m hpo.run report`` does; the study's artifacts (for
    the best model's test accuracy) are found where the study records them.  Returns what was
    written: ``out``, ``rows``, ``figures`` and ``test`` (accuracy and how, or None and why not).

    The default folder's name is the study name made safe (:func:`hpo.names.folder_name`): a
    name from a shared storage never chooses a folder outside ``reports``.  A piece that cannot
    be made (the model's test accuracy, a figure) costs only itself, with one ``hpo: warning:``
    line on stderr."""
    import warnings

    from hpo.errors import warnings_as_lines
    from hpo.folders import check_folder
    from hpo.names import check_study_name, name_folder
    from hpo.reporting import ReportWarning, write_report
    from hpo.storage import make_storage, resolve_url
    from hpo.study import load_study, study_info

    check_study_name(study_name, "STUDY_NAME")
    folder = Path(out) if out is not None else name_folder("reports", study_name, "--out")
    check_folder(folder, "--out")
    url = resolve_url(storage)
    study = load_study(study_name, make_storage(url, mode="read"))
    study_info(study)  # not an hpo study: one line, before anything is written
    store = _artifact_store(study, url, artifact_dir)
    if store is not None:  # the best model's test accuracy needs Keras
        from hpo.quiet import import_tensorflow

        import_tensorflow()
    with warnings.catch_warnings():  # each piece the report leaves out: one hpo: warning: line
        warnings_as_lines(ReportWarning)
        done = write_report(study, folder, artifact_store=store, top=top)
    return {"out": folder, **done}


def _artifact_store(study: Any, url: str, given: str | Path | None) -> Any:
    """The study's artifact store for reading; None when its folder is missing (one warning line)."""
    import sys

    from hpo.study import artifact_folder, check_artifact_folder

    folder = artifact_folder(url, given, study=study)
    if folder.is_dir():
        from optuna.artifacts import FileSystemArtifactStore

        return FileSystemArtifactStore(str(folder))
    problem = f"--artifact-dir {str(given)!r} is no folder: no test accuracy" if given else check_artifact_folder(study, folder)
    if problem is not None:
        print(f"hpo: warning: {problem}", file=sys.stderr, flush=True)
    return None


def compare(
    study_names: Sequence[str],
    *,
    storage: str | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Write one comparison of several studies of a storage into ``out`` (default
    ``reports/A-vs-B...``), as ``python -m hpo.run report A B ...`` does: ``summary.md`` (a table of
    answers, one row per study, and each study's Pareto front), ``answers.csv``, and the figures
    ``history.png`` and ``pareto.png`` with every study in its own colour and marker.  Every study
    is found (and checked to be an hpo study) before anything is written; a name given twice is
    bad input.  Returns ``out``, ``rows`` (studies) and ``figures``."""
    import warnings

    from hpo.errors import warnings_as_lines
    from hpo.folders import check_folder
    from hpo.names import check_study_name, name_folder
    from hpo.reporting import ReportWarning, write_comparison
    from hpo.storage import make_storage, resolve_url
    from hpo.study import load_study, study_info

    names = list(study_names)
    if len(names) < 2:
        raise HpoError(f"comparing needs at least two studies, but got {len(names)}")
    for name in names:
        check_study_name(name, "STUDY_NAME")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise HpoError(f"study {twice[0]!r} is named twice: compare different studies")
    folder = Path(out) if out is not None else name_folder("reports", "-vs-".join(names), "--out")
    check_folder(folder, "--out")
    url = resolve_url(storage)
    read = make_storage(url, mode="read")
    studies = [load_study(name, read) for name in names]
    for study in studies:
        study_info(study)  # not an hpo study: one line, before anything is written
    with warnings.catch_warnings():
        warnings_as_lines(ReportWarning)
        done = write_comparison(studies, folder)
    return {"out": folder, **done}
