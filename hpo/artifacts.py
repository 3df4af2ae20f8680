"""Per-trial artifacts in an ``optuna.artifacts`` store, and per-trial TensorBoard logs.

:class:`ArtifactWriter` is an :class:`hpo.objective.Objective` callback: after each trial has
trained (pruned trials included) it uploads

* ``trial-NNNN-curves.png``: loss and the monitored accuracy per epoch, the target dashed;
* ``trial-NNNN-history.json`` (history plus the trial's outcome) and ``trial-NNNN-history.csv``;
* ``trial-NNNN-model.keras``: the trained model, only when the trial improves the study's best
  (a custom family's model that Keras cannot serialize is left out, with a warning).

optuna-dashboard shows them on the trial's page.  An artifact that cannot be written (full
disk, read-only folder, ...) is a warning (:class:`ArtifactWarning`), never a lost trial.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from hpo.config import StudyConfig
from hpo.errors import ConfigError

__all__ = [
    "ArtifactFolder",
    "ArtifactWarning",
    "ArtifactWriter",
    "make_artifact_store",
    "tensorboard_factory",
    "writable",
]


class ArtifactWarning(UserWarning):
    """An artifact could not be written; the trial itself is unaffected."""


class UnserializableModel(Exception):
    """Keras cannot save the model (a custom model or layer without ``get_config``, ...)."""


class ArtifactFolder(FileSystemArtifactStore):
    """Optuna's file-system artifact store, plus :meth:`upload`, which writes a file completely
    before the trial points to it.

    ``optuna.artifacts.upload_artifact`` records the artifact in the trial first and writes the
    file second, so a full disk or a read-only folder would leave the trial pointing to a
    missing or truncated file.  :meth:`upload` copies the file into the folder under a staging
    name first; only when that worked does Optuna record it, and "writing" is then a rename.
    """

    def __init__(self, folder: str | Path):
        super().__init__(str(folder))
        self.folder = Path(folder)

    def upload(self, trial: optuna.Trial, path: Path) -> str:
        staged = self.folder / f".partial-{uuid.uuid4().hex}"
        try:
            shutil.copyfile(path, staged)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        try:
            return upload_artifact(artifact_store=_Staged(self, staged), file_path=str(path), study_or_trial=trial)
        finally:
            staged.unlink(missing_ok=True)


class _Staged:
    """The store ``upload_artifact`` writes to: the content is already in place under ``staged``."""

    def __init__(self, folder: ArtifactFolder, staged: Path):
        self.folder, self.staged = folder, staged

    def write(self, artifact_id: str, content_body: Any) -> None:
        os.replace(self.staged, self.folder.folder / artifact_id)

    def open_reader(self, artifact_id: str) -> Any:
        return self.folder.open_reader(artifact_id)

    def remove(self, artifact_id: str) -> None:
        self.folder.remove(artifact_id)


def make_artifact_store(path: str | Path) -> ArtifactFolder:
    """A file-system artifact store at ``path``, created if missing."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create artifact folder {str(folder)!r}: {e.strerror or e}", key="--artifact-dir") from None
    return ArtifactFolder(folder)


def _warn(trial: optuna.Trial, what: str, error: BaseException) -> None:
    if isinstance(error, OSError) and error.strerror:  # the folder it could not write in, not a scratch name
        where = f" in {str(Path(error.filename).parent)!r}" if isinstance(error.filename, str) else ""
        line = f"[Errno {error.errno}] {error.strerror}{where}"
    else:
        line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    warnings.warn(
        f"trial {trial.number}: {what} artifact not written: {type(error).__name__}: {line}", ArtifactWarning, stacklevel=3
    )


def writable(folder: str | Path) -> str | None:
    """None if a file can be created in ``folder``, else why not (e.g. "Read-only file system")."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


class ArtifactWriter:
    """Objective callback ``(trial, model, outcome)`` uploading a trial's artifacts."""

    def __init__(self, store: Any, cfg: StudyConfig, *, save_model: bool = True):
        self.store = store
        self.cfg = cfg
        self.save_model = save_model

    def __call__(self, trial: optuna.Trial, model: Any, outcome: dict[str, Any]) -> None:
        try:
            tmp = tempfile.TemporaryDirectory(prefix="hpo-artifacts-", ignore_cleanup_errors=True)
        except Exception as e:  # noqa: BLE001 - a full or read-only temporary folder
            _warn(trial, "every", e)
            return
        with tmp:
            for what, write in (
                ("learning-curve plot", self._curves),
                ("history", self._history),
                ("model", self._model),
            ):
                try:
                    write(Path(tmp.name), trial, model, outcome)
                except Exception as e:  # noqa: BLE001 - an artifact is never worth a trial
                    _warn(trial, what, e)

    def _upload(self, trial: optuna.Trial, path: Path) -> str:
        if isinstance(self.store, ArtifactFolder):
            return self.store.upload(trial, path)
        return upload_artifact(artifact_store=self.store, file_path=str(path), study_or_trial=trial)

    def _curves(self, tmp: Path, trial: optuna.Trial, model: Any, outcome: dict[str, Any]) -> None:
        from hpo.reporting import outcome_line, plot_learning_curve, trial_title

        history = outcome.get("history") or {}
        if not history:
            return
        obj = self.cfg.objective
        params = {"family": outcome.get("family"), **trial.params} if "family" not in trial.params else dict(trial.params)
        label = outcome_line(obj.monitor, obj.target, outcome.get("epochs_to_target"), history)
        if outcome.get("stop_reason") not in (None, "target", "max_epochs"):
            label += f", {outcome['stop_reason']}"
        path = tmp / f"trial-{trial.number:04d}-curves.png"
        title = trial_title(trial.number, params, label)
        plot_learning_curve(history, obj.monitor, obj.target, title, path, epochs_to_target=outcome.get("epochs_to_target"))
        self._upload(trial, path)

    def _history(self, tmp: Path, trial: optuna.Trial, model: Any, outcome: dict[str, Any]) -> None:
        from hpo.reporting import history_frame

        history = outcome.get("history") or {}
        path = tmp / f"trial-{trial.number:04d}-history.json"
        path.write_text(json.dumps({"trial": trial.number, **outcome}, indent=1, default=str) + "\n", encoding="utf-8")
        self._upload(trial, path)
        if history:
            csv = tmp / f"trial-{trial.number:04d}-history.csv"
            history_frame(history).to_csv(csv, index=False)
            self._upload(trial, csv)

    def _model(self, tmp: Path, trial: optuna.Trial, model: Any, outcome: dict[str, Any]) -> None:
        if not self.save_model or model is None or outcome.get("stop_reason") in ("pruned", "nan", "error", None):
            return
        from hpo.callbacks import cost

        obj = self.cfg.objective
        best = outcome.get(f"best_{obj.monitor}")
        value = cost(obj.max_epochs, obj.target, -math.inf if best is None else best, outcome.get("epochs_to_target"))
        try:
            best_so_far = trial.study.best_value
        except ValueError:  # no completed trial yet
            best_so_far = math.inf
        if value >= best_so_far:
            return
        path = tmp / f"trial-{trial.number:04d}-model.keras"
        try:
            model.save(path)
        except (NotImplementedError, TypeError, ValueError) as e:  # Keras' words span many lines: keep them whole
            text = " ".join(str(e).split())[:240] or type(e).__name__
            raise UnserializableModel(f"Keras cannot save this model, so it is not kept ({text})") from None
        self._upload(trial, path)


def tensorboard_factory(log_dir: str | Path, study_name: str, *, batches: bool = False):
    """A per-trial factory of TensorBoard callbacks writing to ``LOG_DIR/STUDY/trial-NNNN``; ``STUDY``
    is the study name made one safe folder name (:func:`hpo.names.folder_name`), inside ``LOG_DIR``."""
    import keras

    from hpo.names import name_folder

    class TrialTensorBoard(keras.callbacks.TensorBoard):
        """Flushes every epoch, so a pruned trial (training ends by exception) keeps its logs."""

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            super().on_epoch_end(epoch, logs)
            for writer in self._writers.values():
                writer.flush()

    root = name_folder(log_dir, study_name, "--tensorboard")

    def make(trial: optuna.Trial) -> keras.callbacks.Callback:
        return TrialTensorBoard(
            log_dir=str(root / f"trial-{trial.number:04d}"),
            update_freq="batch" if batches else "epoch",
            write_graph=False,
        )

    return make
