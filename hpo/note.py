"""The markdown note hpo attaches to each study it creates (shown by optuna-dashboard)."""

from __future__ import annotations

from typing import Any

from hpo.config import Choice, Fixed, Range, StudyConfig

__all__ = ["study_note", "save_study_note"]


def _spec(spec: Any) -> str:
    if isinstance(spec, Fixed):
        return f"`{spec.value!r}` (fixed)"
    if isinstance(spec, Choice):
        return "one of " + ", ".join(f"`{v!r}`" for v in spec.values)
    if isinstance(spec, Range):
        extra = ", log" if spec.log else (f", step {spec.step:g}" if spec.step else "")
        return f"{spec.low:g} to {spec.high:g}{extra}"
    return str(spec)


def study_note(cfg: StudyConfig, name: str | None = None) -> str:
    """Dataset, objective and search space of study ``name`` (default: the file's), as markdown."""
    d, o = cfg.data, cfg.objective
    size = f"{d.train_size} training images" if d.train_size else "all training images"
    lines = [
        f"## {name or cfg.study.name}: epochs to `{o.monitor}` >= {o.target:g}",
        "",
        f"* dataset: **{d.dataset}** ({size}, validation fraction {d.validation_fraction:g}, split seed {d.split_seed})",
        f"* monitor: `{o.monitor}`, target: **{o.target:g}**, max_epochs: **{o.max_epochs}**",
        f"* objective `epochs_to_target` (minimize): the epoch the target was reached, else "
        f"{o.max_epochs} + 1 + (target - best {o.monitor})",
        f"* max_params: {o.max_params:,} (larger models are not built: `too_large`, the worst value)"
        if o.max_params
        else "* max_params: no cap",
        f"* sampler: {cfg.study.sampler}, pruner: {cfg.study.pruner}, seed: {cfg.study.seed}",
        f"* study file: `{cfg.source}`",
        "",
        "### Search space",
        "",
    ]
    for family in cfg.model.family:
        if cfg.model.searched or len(cfg.space) > 1:
            lines.append(f"**{family}**" + (f" (family one of {', '.join(cfg.model.family)})" if cfg.model.searched else ""))
            lines.append("")
        lines += ["| key | values |", "|---|---|"]
        lines += [f"| {key} | {_spec(spec)} |" for key, spec in cfg.space[family].items()]
        lines.append("")
    return "\n".join(lines)


def save_study_note(study: Any, cfg: StudyConfig) -> None:
    """Store :func:`study_note` where optuna-dashboard shows it (the study's note)."""
    from optuna_dashboard import save_note

    save_note(study, study_note(cfg, study.study_name))
