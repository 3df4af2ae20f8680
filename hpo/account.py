"""One command, one account: what a ``study`` command asked for and did, across the processes
it ran in (a worker that recycles itself, ``--workers N``), its progress bar and its summary.

A recycled worker's next process inherits the account through the environment
(``HPO_ACCOUNT``); a worker started by a launcher writes its account to the file named by
``HPO_ACCOUNT_FILE`` when it ends, and the launcher adds them up.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["ACCOUNT_ENV", "ACCOUNT_FILE_ENV", "Account", "Progress", "best_text", "summary", "trial_line"]

ACCOUNT_ENV = "HPO_ACCOUNT"
ACCOUNT_FILE_ENV = "HPO_ACCOUNT_FILE"


@dataclasses.dataclass
class Account:
    """Trials a command asked for and ran, and since when; ``searched`` excludes repeats."""

    asked: int | None  # search trials the command runs (None: unlimited)
    started: float = dataclasses.field(default_factory=time.time)  # wall clock at the command's start
    ran: int = 0  # trials run, repeats included
    searched: int = 0  # trials run that were not repeats
    processes: int = 1  # processes the command has run in so far
    banner: bool = False  # the banner has been printed

    @property
    def seconds(self) -> float:
        return time.time() - self.started

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Account:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in fields})

    @classmethod
    def inherited(cls, asked: int | None) -> Account:
        """The account a previous process of this command handed on, else a new one."""
        text = os.environ.pop(ACCOUNT_ENV, None)
        if text:
            try:
                return cls.from_json(text)
            except (ValueError, TypeError):
                pass
        return cls(asked=asked)

    def add(self, other: Account) -> None:
        self.ran += other.ran
        self.searched += other.searched

    def trials_line(self) -> str:
        asked = "unlimited" if self.asked is None else str(self.asked)
        repeats = self.ran - self.searched
        ran = f"{self.ran} run" + (f" ({self.searched} searched + {repeats} repeats)" if repeats else "")
        where = f" in {self.processes} processes" if self.processes > 1 else ""
        return f"{asked} {plural(asked, 'trial')} asked, {ran} in {self.seconds:.1f} s{where}"


def plural(n: Any, noun: str) -> str:
    """``noun`` for one, else ``noun + "s"`` (``n`` a number or its text)."""
    return noun if str(n) == "1" else noun + "s"


def write_account(account: Account) -> None:
    """A launcher's worker: leave the account where the launcher reads it."""
    path = os.environ.get(ACCOUNT_FILE_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(account.to_json())


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "none"


def trial_line(trial: Any, cfg: Any) -> str | None:
    """One line for a finished trial: its number, outcome, epochs and seconds -- Optuna's log
    line of the trial without the parameters (``--verbose`` shows those too).  None for a trial
    that did not train (``max_trials`` reached)."""
    from optuna.trial import TrialState

    ua, obj = trial.user_attrs, cfg.objective
    reason = ua.get("stop_reason")
    if reason in ("max_trials", "interrupted") or (trial.state == TrialState.FAIL and reason is None):
        return None  # the worker says why it stops; Optuna's warning says why a trial failed
    best = f"best {obj.monitor} {_number(ua.get('best_' + obj.monitor))}"
    epochs = ua.get("epochs")
    if trial.state == TrialState.FAIL:
        outcome = f"failed: {ua.get('error', 'see the warning above')}"
    elif ua.get("reached_target"):
        outcome = f"{ua['epochs_to_target']:g} epochs to {obj.monitor} >= {obj.target:g}"
    elif reason == "too_large":
        outcome = f"not built: {ua.get('n_params', 0):,} parameters, over objective.max_params"
    elif reason == "nan":
        outcome = f"stopped after epoch {epochs}: the loss is NaN"
    elif reason == "dropped":
        outcome = "dropped: it can no longer beat the answer"
    elif reason in ("capped", "pruned"):
        outcome = f"{reason} after epoch {epochs} ({best})"
    else:
        outcome = f"not reached in {epochs} epochs ({best})"
    what = f"trial {trial.number}"
    if ua.get("repeat_of") is not None:
        what += f" (repeat of {ua['repeat_of']}, seed {ua.get('seed')})"
    seconds = ua.get("seconds")
    return f"{what}: {outcome}" + (f", {seconds:.1f} s" if isinstance(seconds, (int, float)) else "")


def best_text(study: Any, cfg: Any) -> str:
    """The progress bar's words: ``best: 4 epochs (trial 22)``, ``best: not reached
    (val_accuracy 0.8660)``, and the confirmed answer once there is one."""
    from hpo.answer import stored_answer

    try:
        best = study.best_trial
    except ValueError:
        return ""
    ua, obj = best.user_attrs, cfg.objective
    if ua.get("reached_target"):
        text = f"best: {ua['epochs_to_target']:g} epochs (trial {best.number})"
    else:
        text = f"best: not reached ({obj.monitor} {_number(ua.get('best_' + obj.monitor))})"
    answer = stored_answer(study) if cfg.study.confirming else None
    if answer is not None and isinstance(answer["median"], (int, float)) and math.isfinite(answer["median"]):
        text += f", answer: {answer['median']:g} epochs (trial {answer['trial']})"
    return text


class Progress:
    """One progress bar for a whole command (tqdm, on stderr): search trials done of those
    asked, the repeats, and the best result.  While it shows, log lines and :meth:`write` go
    above it.  With ``cfg``, each finished trial is one line (:func:`trial_line`), above the bar
    or, without one (a log file, ``--no-progress``), on stdout."""

    def __init__(self, account: Account, enabled: bool = True, cfg: Any = None, quiet_optuna: bool = False):
        self.account = account
        self.cfg = cfg
        self.bar = None
        self._best = ""
        self._verbosity: int | None = None
        if quiet_optuna:  # its INFO line per trial repeats every parameter; trial_line says the rest
            import optuna

            self._verbosity = optuna.logging.get_verbosity()
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._handler: logging.Handler | None = None
        if not enabled or not sys.stderr.isatty():  # a log file gets Optuna's lines, not a redrawn bar
            return
        import optuna
        from tqdm.auto import tqdm

        self.bar = tqdm(total=account.asked, initial=account.searched, unit="trial", desc="trials", file=sys.stderr)
        self._repeats = account.ran - account.searched
        self._show_postfix()

        class _Above(logging.StreamHandler):
            def emit(self, record: Any) -> None:
                try:
                    tqdm.write(self.format(record), file=sys.stderr)
                except Exception:  # noqa: BLE001 - logging never stops a study
                    self.handleError(record)

        self._handler = _Above()
        self._handler.setFormatter(optuna.logging.create_default_formatter())
        for old in logging.getLogger("optuna").handlers:  # hpo's filters go along
            for f in old.filters:
                self._handler.addFilter(f)
        optuna.logging.disable_default_handler()
        logging.getLogger("optuna").addHandler(self._handler)

    def _show_postfix(self) -> None:
        if self.bar is not None:
            words = [f"+{self._repeats} repeats"] if self._repeats else []
            self.bar.set_postfix_str(", ".join([*words, *([self._best] if self._best else [])]))

    def trial_done(self, repeat: bool) -> None:
        if self.bar is None:
            return
        if repeat:
            self._repeats += 1
            self._show_postfix()
        else:
            self.bar.update(1)

    def set(self, searched: int, repeats: int, best: str | None = None) -> None:
        """Show counts (and the best result, :func:`best_text`) found elsewhere (a launcher
        polling its workers' study)."""
        if self.bar is None:
            return
        self._repeats = repeats
        if best is not None:
            self._best = best
        self.bar.n = searched
        self._show_postfix()
        self.bar.refresh()

    def after_trial(self, study: Any, trial: Any) -> None:  # an Optuna callback
        if self.cfg is not None:
            line = trial_line(trial, self.cfg)
            if line is not None:
                self.write(line)
            if self.bar is not None:
                self._best = best_text(study, self.cfg)
        self.trial_done(trial.user_attrs.get("repeat_of") is not None)
        self._show_postfix()

    def write(self, line: str) -> None:
        if self.bar is None:
            sys.stdout.write(line if line.endswith("\n") else line + "\n")
            sys.stdout.flush()
        else:
            from tqdm.auto import tqdm

            tqdm.write(line.rstrip("\n"), file=sys.stdout)

    def close(self) -> None:
        if self._verbosity is not None:  # the caller's Optuna logging as it was (hpo.optimize in-process)
            import optuna

            optuna.logging.set_verbosity(self._verbosity)
            self._verbosity = None
        if self.bar is None:
            return
        import optuna

        self.bar.close()
        logging.getLogger("optuna").removeHandler(self._handler)
        optuna.logging.enable_default_handler()
        self.bar = None


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _lines(lines: list[str]) -> str:
    """The summary for a terminal: what trials stored (names, values) shown escaped, one line each."""
    from hpo.names import printable

    return "\n".join(printable(line) for line in lines)


def summary(study: Any, cfg: Any, account: Account | None = None, trials: Iterable[Any] | None = None) -> str:
    """A few lines: what the command did, counts by outcome, the answer (or best trial) and its parameters."""
    from optuna.trial import TrialState

    trials = list(study.get_trials(deepcopy=False) if trials is None else trials)
    finished = [t for t in trials if t.state.is_finished()]
    reached = [t for t in finished if t.user_attrs.get("reached_target")]
    count = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    obj = cfg.objective
    lines = [account.trials_line()] if account is not None else []
    lines += [
        f"study {study.study_name!r} holds {len(trials)}: "
        f"{len(reached)} reached {obj.monitor} >= {obj.target}, {count[TrialState.COMPLETE]} complete, "
        f"{count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed"
    ]
    try:
        best = study.best_trial
    except ValueError:
        lines.append("no completed trial yet")
        return _lines(lines)
    ua = best.user_attrs
    if ua.get("reached_target"):
        head = f"best: trial {best.number}, {ua['epochs_to_target']} epochs to {obj.monitor} >= {obj.target}"
    else:
        head = f"best: trial {best.number}, target not reached (best {obj.monitor} {ua.get('best_' + obj.monitor)}, value {best.value:.4f})"
    spe = ua.get("seconds_per_epoch")
    lines.append(f"{head}; {ua.get('n_params')} parameters, {spe} s/epoch" if spe is not None else head)
    if not cfg.study.confirming:
        fixed = ua.get("fixed_params") if isinstance(ua.get("fixed_params"), dict) else {}
        lines.append("  " + " ".join(f"{k}={_fmt(v)}" for k, v in {**best.params, **fixed}.items()))
        return _lines(lines)
    from hpo.answer import answer_line, compute_answer, confirmation_cost

    answer = compute_answer(trials, cfg.study.confirm_seeds)
    lines.append(f"answer: {answer_line(answer, cfg.study.confirm_seeds)}")
    if answer is not None:
        lines.append("  " + " ".join(f"{k}={_fmt(v)}" for k, v in answer["params"].items()))
        if answer["trial"] != best.number:
            lines.append(
                f"  (Optuna's best_trial {best.number} is a single run; the answer is the fastest median over "
                f"{cfg.study.confirm_seeds} seeds)"
            )
    cost = confirmation_cost(trials)
    if cost["repeats"]:
        lines.append(
            f"confirmation: {cost['repeats']} repeats ({cost['dropped']} dropped), {cost['repeat_epochs']:g} "
            f"of {cost['epochs']:g} training epochs; {cost['capped']} {plural(cost['capped'], 'trial')} capped"
        )
    return _lines(lines)
