"""The markdown note hpo attaches to each study it creates (shown by optuna-dashboard)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.config import Choice, Fixed, Range, StudyConfig
from hpo.names import md_code, md_text

__all__ = ["answer_section", "study_note", "save_study_note"]


def _spec(spec: Any) -> str:
    if isinstance(spec, Fixed):
        return f"`{spec.value!r}` (fixed)"
    if isinstance(spec, Choice):
        return "one of " + ", ".join(f"`{v!r}`" for v in spec.values)
    if isinstance(spec, Range):
        extra = ", log" if spec.log else (f", step {spec.step:g}" if spec.step else "")
        return f"{spec.low:g} to {spec.high:g}{extra}"
    return str(spec)


def answer_section(cfg: StudyConfig, answer: Mapping[str, Any] | None) -> list[str]:
    """The note's answer: the confirmed configuration, or that there is none yet."""
    from hpo.answer import answer_line

    lines = ["### Answer", "", answer_line(answer, cfg.study.confirm_seeds) + ".", ""]
    if answer:
        lines += [
            f"Configuration of trial {answer['trial']} ({answer.get('n_params')} parameters): "
            + ", ".join(md_code(f"{k}={v!r}") for k, v in answer["params"].items())
            + ".",
            "",
            "Optuna's *best trial* is the fastest single run, a lucky draw among many; "
            "the answer is the fastest median over seeds.",
            "",
        ]
    return lines


def _steps_line(checks_per_epoch: int) -> str:
    """What the dashboard's "Step" axis of intermediate values counts: the pruners' rungs
    (successive halving, warm-up steps) are in these steps, so they stay counted from 0."""
    if checks_per_epoch == 1:
        return "* intermediate values: step s is the cost after epoch s + 1 (steps count from 0)"
    return (
        f"* intermediate values: step s is the cost after check s + 1 of {checks_per_epoch} per epoch, "
        f"i.e. after (s + 1) / {checks_per_epoch} epochs (steps count from 0)"
    )


def _data_lines(cfg: StudyConfig) -> list[str]:
    """The user's data: its file (and SHA-256) or folder (and how its images are read)."""
    from hpo.data import data_identity

    ident = data_identity(cfg.data)
    if not ident:
        return []
    if "data.sha256" in ident:
        return [f"* data: {md_code(ident['data.path'])}, SHA-256 {md_code(ident['data.sha256'])}"]
    size = "x".join(str(v) for v in ident["data.image_size"]) if ident["data.image_size"] else "their own size"
    return [f"* data: {md_code(ident['data.path'])}, images read at {size}, {ident['data.color_mode']}"]


def study_note(cfg: StudyConfig, name: str | None = None, answer: Mapping[str, Any] | None = None) -> str:
    """Dataset, objective, answer and search space of study ``name`` (default: the file's), as markdown."""
    d, o = cfg.data, cfg.objective
    size = f"{d.train_size} training images" if d.train_size else "all training images"
    lines = [
        f"## {md_text(name or cfg.study.name)}: epochs to `{o.monitor}` >= {o.target:g}",
        "",
        f"* dataset: **{d.dataset}** ({size}, validation fraction {d.validation_fraction:g}"
        + (f", at most {d.validation_size} validation images" if d.validation_size else "")
        + f", split seed {d.split_seed})",
        *_data_lines(cfg),
        f"* monitor: `{o.monitor}`, target: **{o.target:g}**, max_epochs: **{o.max_epochs}**",
        f"* objective `epochs_to_target` (minimize): the epoch the target was reached, else "
        f"{o.max_epochs} + 1 + (target - best {o.monitor})",
        _steps_line(o.checks_per_epoch),
        f"* max_params: {o.max_params:,} (larger models are not built: `too_large`, the worst value)"
        if o.max_params
        else "* max_params: no cap",
        f"* sampler: {cfg.study.sampler}, pruner: {cfg.study.pruner}, seed: {cfg.study.seed}",
        f"* confirmation: {cfg.study.confirm_seeds} runs over seeds per answer"
        if cfg.study.confirming
        else "* confirmation: off",
        f"* capping: a trial not at the target after ceil(answer median) + {o.cap_slack} epochs stops (`capped`)"
        if o.cap
        else "* capping: off",
        f"* study file: {md_code(cfg.source)}",
        "",
        *answer_section(cfg, answer),
        "### Search space",
        "",
    ]
    for family in cfg.model.family:
        if cfg.model.searched or len(cfg.space) > 1:
            lines.append(f"**{family}**" + (f" (family one of {', '.join(cfg.model.family)})" if cfg.model.searched else ""))
            lines.append("")
        if family == "custom":
            lines += [f"model built by {md_code(cfg.model.builder)}(params, input_shape, n_classes)", ""]
        lines += ["| key | values |", "|---|---|"]
        lines += [f"| {key} | {_spec(spec)} |" for key, spec in cfg.space[family].items()]
        lines.append("")
    return "\n".join(lines)


def save_study_note(study: Any, cfg: StudyConfig, answer: Mapping[str, Any] | None = None) -> None:
    """Store :func:`study_note` where optuna-dashboard shows it (the study's note)."""
    from optuna_dashboard import save_note

    save_note(study, study_note(cfg, study.study_name, answer))
