"""What capping (hpo.search.EpochCap) saves and loses, by replaying recorded learning curves.

Every recorded run is unpruned and uncapped, so each trial holds its full curve (the cost it
reported after each epoch, see hpo.callbacks).  A replay feeds the run's trials, in their
recorded order, to a fresh in-memory Optuna study whose pruner is the real
``EpochCap(NopPruner(), max_epochs, slack)``, step by step as hpo's callback does: report the
cost; a cost <= max_epochs means the target was reached (tell COMPLETE, stop); else
``should_prune`` -> PRUNED (capped).  A trial that was capped after k of its n recorded epochs
costs k epochs and k/n of its recorded seconds.  "Lost" trials are capped ones that would have
reached the target later: they cannot beat the bound, but the sampler sees them as failures.

Data: ``docs/bench/search.jsonl`` (runs ``random`` and ``grid``: fashion_dense, 6 epochs, target
0.88) and ``docs/bench/cap.jsonl``, recorded by ``--record``: studies/quickstart.toml (target
0.85) for real with random sampling, no pruner, no cap, no confirmation, 10 epochs, 40 trials
per seed (seeds already recorded are skipped).

    .venv/bin/python scripts/bench_cap.py --record --seeds 0 1   # record, then replay everything
    .venv/bin/python scripts/bench_cap.py --summary              # replay only

One table per data source, one row per slack; the last line is a JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEARCH = REPO / "docs" / "bench" / "search.jsonl"
CAP = REPO / "docs" / "bench" / "cap.jsonl"
QUICKSTART = REPO / "studies" / "quickstart.toml"
SLACKS = (0, 1, 2, 3, 4)
N_TRIALS, MAX_EPOCHS = 40, 10


def replay(run: dict[str, Any], slack: int | None) -> dict[str, Any]:
    """Feed ``run``'s trials to a fresh study capped with ``slack`` (None: no cap)."""
    import optuna

    from hpo.search import EpochCap

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    max_epochs = run["max_epochs"]
    pruner = optuna.pruners.NopPruner() if slack is None else EpochCap(optuna.pruners.NopPruner(), max_epochs, slack)
    study = optuna.create_study(direction="minimize", pruner=pruner)
    epochs = seconds = 0.0
    capped, cut, lost = [], 0, []
    for rec in run["trials"]:
        trial, curve = study.ask(), rec["curve"]
        for step, value in enumerate(curve):
            trial.report(value, step)
            if value <= max_epochs:  # reached the target: the target check wins
                study.tell(trial, value)
                break
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                capped.append(rec["number"])
                cut += step + 1 < len(curve)
                if rec["epochs_to_target"] is not None:
                    lost.append({"number": rec["number"], "capped_at": step + 1, "would_reach": rec["epochs_to_target"]})
                break
        else:
            study.tell(trial, curve[-1])
        ran = step + 1
        epochs += ran
        seconds += rec["seconds"] * ran / len(curve)
    done = [t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)) if t.value <= max_epochs]
    best = min(done, key=lambda t: (t.value, t.number), default=None)
    return {
        "epochs": epochs,
        "seconds": seconds,
        "capped": capped,
        "cut": cut,
        "lost": lost,
        "best": None if best is None else (best.number, best.value),
    }


def summarise(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Replay every run at every slack; print and return the totals over runs."""
    base = {id(r): replay(r, None) for r in runs}
    e0, s0 = sum(b["epochs"] for b in base.values()), sum(b["seconds"] for b in base.values())
    n_trials = sum(len(r["trials"]) for r in runs)
    n_reached = sum(t["epochs_to_target"] is not None for r in runs for t in r["trials"])
    print(f"\n{name}: {len(runs)} runs, {n_trials} trials ({n_reached} reached the target); no cap: {e0:g} epochs, {s0:.0f} s")
    print(
        f"{'slack':>5} {'epochs':>7} {'saved':>6} {'%':>5} {'seconds':>8} {'saved':>6} {'%':>5} {'capped':>6} {'cut':>4} {'lost':>4}  best same  lost: capped @epochs -> would reach at epoch:count"
    )
    rows = {}
    for slack in SLACKS:
        res = [(r, replay(r, slack)) for r in runs]
        e, s = sum(x["epochs"] for _, x in res), sum(x["seconds"] for _, x in res)
        lost = sorted(lo["would_reach"] for _, x in res for lo in x["lost"])
        at = sorted({lo["capped_at"] for _, x in res for lo in x["lost"]})
        same = all(x["best"] == base[id(r)]["best"] for r, x in res)
        row = {
            "epochs": e,
            "epochs_saved": e0 - e,
            "epochs_saved_pct": round(100 * (e0 - e) / e0, 1),
            "seconds": round(s, 1),
            "seconds_saved": round(s0 - s, 1),
            "seconds_saved_pct": round(100 * (s0 - s) / s0, 1),
            "capped": sum(len(x["capped"]) for _, x in res),
            "cut": sum(x["cut"] for _, x in res),
            "lost": len(lost),
            "lost_capped_at": at,
            "lost_would_reach": {f"{e:g}": lost.count(e) for e in sorted(set(lost))},
            "best_same": same,
        }
        rows[str(slack)] = row
        where = "  ".join(f"{e}:{n}" for e, n in row["lost_would_reach"].items()) or "-"
        where = f"@{'/'.join(map(str, at))} -> {where}" if lost else where
        print(
            f"{slack:>5} {e:>7g} {e0 - e:>6g} {row['epochs_saved_pct']:>5} {s:>8.0f} {s0 - s:>6.0f} {row['seconds_saved_pct']:>5}"
            f" {row['capped']:>6} {row['cut']:>4} {len(lost):>4}  {'yes' if same else 'NO':>9}  {where}"
        )
    return {
        "runs": len(runs),
        "trials": n_trials,
        "reached": n_reached,
        "no_cap": {"epochs": e0, "seconds": round(s0, 1)},
        "slack": rows,
    }


def load(path: Path, variants: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in runs if variants is None or r["variant"] in variants]


def record(seed: int, workdir: Path) -> dict[str, Any]:
    """Run the quickstart study for real (random, unpruned, uncapped) and return it as a run."""
    import optuna

    name, db = f"cap{seed}", workdir / f"cap{seed}.db"
    cmd = [
        sys.executable,
        "-m",
        "hpo.run",
        "study",
        str(QUICKSTART),
        "--storage",
        f"sqlite:///{db}",
        "--no-artifacts",
        "--no-progress",
    ]
    cmd += ["--n-trials", str(N_TRIALS), "--seed", str(seed), "--set", "study.sampler=random", "--set", "study.pruner=none"]
    cmd += ["--set", "objective.cap=false", "--set", "study.confirm_seeds=0", "--set", f"objective.max_epochs={MAX_EPOCHS}"]
    cmd += ["--set", f"study.name={name}"]
    load_before, started = os.getloadavg(), time.perf_counter()
    print(f"recording seed {seed} (load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f})", flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    wall, load_after = time.perf_counter() - started, os.getloadavg()
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    trials = []
    for t in sorted(study.trials, key=lambda t: t.number):
        if t.state != optuna.trial.TrialState.COMPLETE or not t.intermediate_values:
            continue  # failed or interrupted: nothing to replay
        curve = [t.intermediate_values[s] for s in sorted(t.intermediate_values)]
        a = t.user_attrs
        trials.append(
            {"number": t.number, "state": t.state.name, "value": t.value, "epochs": a.get("epochs", len(curve)), "epochs_to_target": a.get("epochs_to_target"),
             "curve": curve, "params": t.params, "seconds": a["seconds"]}
        )  # fmt: skip
    target = tomllib.loads(QUICKSTART.read_text())["objective"]["target"]
    return {
        "variant": "random", "study": "quickstart", "seed": seed, "max_epochs": MAX_EPOCHS, "target": target, "n_trials": len(trials),
        "seconds": round(wall, 1), "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after], "trials": trials,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="record the seeds missing from docs/bench/cap.jsonl first")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds to record (default: 0 1)")
    parser.add_argument("--summary", action="store_true", help="only replay what is recorded")
    args = parser.parse_args()
    if args.record and not args.summary:
        missing = [s for s in args.seeds if s not in {r["seed"] for r in load(CAP)}]
        with tempfile.TemporaryDirectory() as tmp:
            for seed in missing:
                run = record(seed, Path(tmp))
                with CAP.open("a") as f:
                    f.write(json.dumps(run) + "\n")
                print(
                    f"seed {seed}: {run['n_trials']} trials in {run['seconds']:.0f} s, load after {run['load_after']}", flush=True
                )
    figures = {"search.jsonl random+grid": summarise("docs/bench/search.jsonl (random, grid)", load(SEARCH, ("random", "grid")))}
    if cap_runs := load(CAP):
        figures["cap.jsonl quickstart"] = summarise("docs/bench/cap.jsonl (quickstart, 10 epochs)", cap_runs)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
