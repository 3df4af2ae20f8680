"""The tutorial's 12-case analysis, reproduced with hpo, then answered by a search.

Step 1 runs studies/tutorial_grid.toml once per target (0.85, 0.90, 0.95): a grid over one
hidden relu layer of 16/32/64/128 units, Adam 1e-3, batch 32, stopping when the training
accuracy reaches the target, at most 30 epochs.  Step 2 runs studies/tutorial_tuned.toml once
per target: a TPE search over a wider dense space with the same data, monitor and epoch budget.
Studies already complete are not run again, so the command can be repeated or resumed.

Outputs in --out: grid.csv (one row per case), table.md (epochs to target, units x target),
grid_summary.png (epochs to target vs. units, one line per target, unreached marked),
curves/target-T-units-U.png (the 12 learning curves), tuned.csv and comparison.md.

    python scripts/tutorial_grid.py --storage sqlite:///studies/tutorial.db --out docs/tutorial
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpo.run import main as hpo_main  # noqa: E402  (sets the TensorFlow environment first)

TARGETS = (0.85, 0.90, 0.95)
GRID_FILE = REPO / "studies" / "tutorial_grid.toml"
TUNED_FILE = REPO / "studies" / "tutorial_tuned.toml"


def study_name(prefix: str, target: float) -> str:
    return f"{prefix}_t{round(target * 100):03d}"


def run_study(study_file: Path, name: str, target: float, n_trials: int, args: argparse.Namespace) -> None:
    """Run the trials a study still lacks (finished trials count; running/failed ones do not)."""
    import optuna

    from hpo.storage import make_storage

    try:
        study = optuna.load_study(study_name=name, storage=make_storage(args.storage))
        done = sum(t.state.is_finished() and t.state.name != "FAIL" for t in study.get_trials(deepcopy=False))
    except KeyError:
        done = 0
    todo = n_trials - done
    print(f"{name}: {done} trials finished, running {max(todo, 0)}", flush=True)
    if todo <= 0:
        return
    argv = ["study", str(study_file), "--storage", args.storage, "--study-name", name, "--n-trials", str(todo)]
    argv += ["--set", f"objective.target={target}", "--no-progress"]
    argv += ["--artifact-dir", args.artifact_dir] if args.artifact_dir else []
    for item in args.overrides:
        argv += ["--set", item]
    code = hpo_main(argv)
    if code != 0:
        raise SystemExit(code)


def grid_frame(storage_url: str, targets: tuple[float, ...], prefix: str):
    """One row per grid case: target, units, epochs to target (or not), best accuracy, time."""
    import optuna
    import pandas as pd

    from hpo.storage import make_storage
    from hpo.study import trial_history

    storage = make_storage(storage_url)
    rows = []
    for target in targets:
        study = optuna.load_study(study_name=study_name(prefix, target), storage=storage)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            ua = t.user_attrs
            units = t.params.get("units_l0", ua.get("fixed_params", {}).get("units_l0"))
            rows.append(
                {
                    "target": target,
                    "units": int(units),
                    "n_params": ua.get("n_params"),
                    "epochs_to_target": ua.get("epochs_to_target"),
                    "reached": bool(ua.get("reached_target")),
                    "epochs_run": ua.get("epochs"),
                    "best_accuracy": ua.get("best_accuracy"),
                    "seconds": ua.get("seconds"),
                    "history": trial_history(t) or {},
                    "trial": t.number,
                }
            )
    df = pd.DataFrame(rows).sort_values(["target", "units"]).reset_index(drop=True)
    df["epochs_to_target"] = df["epochs_to_target"].astype("Int64")
    return df


def epochs_table(df) -> str:
    """Markdown: one row per width, one column per target; unreached cells say so."""
    targets = sorted(df["target"].unique())
    lines = ["| units | parameters | " + " | ".join(f"target {t:g}" for t in targets) + " |"]
    lines.append("|---:|---:|" + "---:|" * len(targets))
    for units, rows in df.groupby("units"):
        cells = []
        for t in targets:
            r = rows[rows["target"] == t]
            if r.empty:
                cells.append("-")
            elif bool(r["reached"].iloc[0]):
                cells.append(str(int(r["epochs_to_target"].iloc[0])))
            else:
                cells.append(f"not in {int(r['epochs_run'].iloc[0])} (best {r['best_accuracy'].iloc[0]:.3f})")
        lines.append(f"| {units} | {int(rows['n_params'].iloc[0]):,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_grid_summary(df, max_epochs: int, path: Path) -> None:
    """Epochs to target vs. units, one line per target; unreached cases as x at the top row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.6))
    colors = {0.85: "tab:green", 0.9: "tab:blue", 0.95: "tab:red"}
    top = max_epochs + 3  # the "not reached" row
    groups = list(df.groupby("target"))
    for i, (target, rows) in enumerate(groups):
        color = colors.get(round(target, 2), f"C{i}")
        shift = 2 ** (0.06 * (i - (len(groups) - 1) / 2))  # keeps overlapping markers apart
        x = rows["units"] * shift
        y = [float(e) if r else top for e, r in zip(rows["epochs_to_target"], rows["reached"], strict=True)]
        ax.plot(x, y, color=color, lw=1.5, label=f"target {target:g}")
        hit = rows["reached"].to_numpy()
        ax.scatter(x[hit], [v for v, h in zip(y, hit, strict=True) if h], color=color, zorder=4)
        ax.scatter(x[~hit], [top] * int((~hit).sum()), color=color, marker="x", s=90, lw=2.5, zorder=4)
    ax.axhline(max_epochs + 1.5, color="k", ls="--", lw=1)
    ax.set_xscale("log", base=2)
    units = sorted(df["units"].unique())
    ax.set_xticks(units, [str(u) for u in units])
    ticks = [1, 5, 10, 15, 20, 25, max_epochs]
    ax.set_yticks([*ticks, top], [*(str(t) for t in ticks), f"not in {max_epochs}"])
    ax.set_ylim(0, top + 2)
    ax.set_xlabel("units in the hidden layer")
    ax.set_ylabel("epochs to reach the training-accuracy target")
    ax.set_title("Tutorial grid on Fashion-MNIST: epochs to target vs. width (x: not reached)", fontsize=10)
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_grid_curves(df, out: Path) -> list[Path]:
    """The 12 learning-curve plots, one per case, as the tutorial drew them."""
    from hpo.reporting import outcome_line, plot_learning_curve

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in df.itertuples():
        ett = (
            None
            if r.epochs_to_target is None or (isinstance(r.epochs_to_target, float) and math.isnan(r.epochs_to_target))
            else r.epochs_to_target
        )
        ett = int(ett) if r.reached else None
        title = f"accuracy threshold {r.target:g}, {r.units} units\n" + outcome_line("accuracy", r.target, ett, r.history)
        path = out / f"target-{r.target:.2f}-units-{r.units:03d}.png"
        plot_learning_curve(r.history, "accuracy", r.target, title, path, dpi=72)
        paths.append(path)
    return paths


def tuned_rows(storage_url: str, targets: tuple[float, ...], prefix: str):
    import optuna
    import pandas as pd

    from hpo.reporting import trial_params
    from hpo.storage import make_storage

    storage = make_storage(storage_url)
    rows = []
    for target in targets:
        study = optuna.load_study(study_name=study_name(prefix, target), storage=storage)
        trials = study.get_trials(deepcopy=False)
        states = [t.state.name for t in trials]
        try:
            best = study.best_trial
        except ValueError:
            continue
        p = trial_params(best)
        units = "-".join(str(p[k]) for k in sorted(p) if k.startswith("units_l"))
        rows.append(
            {
                "target": target,
                "trials": len(trials),
                "complete": states.count("COMPLETE"),
                "pruned": states.count("PRUNED"),
                "best_trial": best.number,
                "epochs_to_target": best.user_attrs.get("epochs_to_target"),
                "reached": bool(best.user_attrs.get("reached_target")),
                "value": best.value,
                "n_params": best.user_attrs.get("n_params"),
                "architecture": f"{p.get('layers')}x[{units}] {p.get('activation')}" + (" +bn" if p.get("batchnorm") else ""),
                "training": f"{p.get('optimizer')} lr={p.get('learning_rate'):.2g} batch={p.get('batch_size')}",
                "epochs_all_trials": int(sum(t.user_attrs.get("epochs") or 0 for t in trials)),
                "seconds_all_trials": round(sum(t.user_attrs.get("seconds") or 0 for t in trials), 1),
            }
        )
    return pd.DataFrame(rows)


def comparison_table(grid, tuned) -> str:
    lines = [
        "| target | grid: fewest epochs (units) | tuned: fewest epochs | tuned best architecture | training | tuned trials (complete/pruned) | epochs trained by the search |",
        "|---:|---|---:|---|---|---|---:|",
    ]
    for r in tuned.itertuples():
        g = grid[(grid["target"] == r.target) & grid["reached"]]
        if len(g):
            m = int(g["epochs_to_target"].min())
            widths = ", ".join(str(u) for u in g[g["epochs_to_target"] == m]["units"])
            gcell = f"{m} ({widths})"
        else:
            gcell = "not reached"
        tcell = str(int(r.epochs_to_target)) if r.reached else f"not reached (value {r.value:.3f})"
        lines.append(
            f"| {r.target:g} | {gcell} | {tcell} | {r.architecture}, {int(r.n_params):,} params | {r.training} | "
            f"{r.trials} ({r.complete}/{r.pruned}) | {r.epochs_all_trials} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", default="sqlite:///studies/tutorial.db", help="storage URL (default %(default)s)")
    parser.add_argument("--out", default="docs/tutorial", help="output folder (default %(default)s)")
    parser.add_argument("--artifact-dir", help="artifact store for the trials (default: studies/artifacts)")
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS), help="training-accuracy targets")
    parser.add_argument("--tuned-trials", type=int, default=12, help="trials of the tuned study per target (0: skip it)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="study-file override for both studies"
    )
    args = parser.parse_args(argv)
    targets = tuple(args.targets)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    for target in targets:
        run_study(GRID_FILE, study_name("tutorial_grid", target), target, 4, args)
    grid = grid_frame(args.storage, targets, "tutorial_grid")
    grid.drop(columns=["history"]).to_csv(out / "grid.csv", index=False)
    table = epochs_table(grid)
    (out / "table.md").write_text(table + "\n", encoding="utf-8")
    plot_grid_summary(grid, 30, out / "grid_summary.png")
    curves = plot_grid_curves(grid, out / "curves")
    print(table)
    print(f"{out}: grid.csv ({len(grid)} cases), table.md, grid_summary.png, {len(curves)} learning curves")

    if args.tuned_trials > 0:
        for target in targets:
            run_study(TUNED_FILE, study_name("tutorial_tuned", target), target, args.tuned_trials, args)
        tuned = tuned_rows(args.storage, targets, "tutorial_tuned")
        tuned.to_csv(out / "tuned.csv", index=False)
        comparison = comparison_table(grid, tuned)
        (out / "comparison.md").write_text(comparison + "\n", encoding="utf-8")
        print(comparison)
    return 0


if __name__ == "__main__":
    sys.exit(main())
