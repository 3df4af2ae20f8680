"""Search efficiency on the mission's question, counted in training epochs.

Every variant searches the main job's space (studies/fashion_dense.toml: dense networks on
Fashion-MNIST, target 0.88 val_accuracy) until it has spent a fixed budget of training epochs,
one trial at a time.  For each run it records

* ``epochs_to_3``: the total epochs spent (all trials so far, pruned ones included) when the
  study first holds a trial that reached the target within 3 epochs (None: not within budget);
* ``best``: the best epochs-to-target once the budget is spent (None: target never reached).

Variants run for real (``--variants``): ``tpe+median`` (hpo's default sampler and pruner),
``tpe+<pruner>`` for the other pruners, ``tpe+median/k4`` (4 target checks per epoch),
``random`` (random sampling, no pruning) and ``grid`` (the tutorial's way: one relu layer,
Adam 1e-3, a grid of widths and batch sizes, shuffled by the seed, no pruning).  Seeds run
one after another, every variant per seed, so a partial run still compares like with like.

Pruners are also compared by replay: random sampling does not depend on results, so the
``random`` runs' learning curves, fed step by step to each pruner exactly as hpo's callback
does (report, target check, should_prune), give what each pruner would have spent on the
very same trials.

Each finished run is appended to ``--out`` (JSON lines); runs already there are skipped, so
the command resumes.  The summary (medians over seeds, with ranges) is printed and its last
line is a JSON object.

    python scripts/bench_search.py --out docs/bench_search.jsonl             # the full comparison
    python scripts/bench_search.py --seeds 0 --budget 12 --variants random   # a smoke run
    python scripts/bench_search.py --out docs/bench_search.jsonl --summary   # summary only
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STUDY_FILE = REPO / "studies" / "fashion_dense.toml"
PRUNERS = ("median", "percentile", "successive_halving", "hyperband")
GRID_SPACE = {
    "layers": 1,
    "units": [32, 64, 128, 256, 512, 1024],
    "activation": "relu",
    "initializer": "glorot_uniform",
    "dropout": 0.0,
    "batchnorm": False,
    "learning_rate": 1e-3,
    "optimizer": "adam",
    "batch_size": [32, 64, 128, 256],
}
VARIANTS = ("tpe+median", "random", "grid", "tpe+median/k4", *(f"tpe+{p}" for p in PRUNERS[1:]))
WITHIN = 3


def variant_config(variant: str, seed: int, max_epochs: int, target: float) -> dict[str, Any]:
    """The study file's settings with the variant's sampler, pruner, checks and space."""
    raw = tomllib.loads(STUDY_FILE.read_text())
    raw = copy.deepcopy(raw)
    study = raw["study"]
    study.pop("pruner_options", None)  # each pruner with hpo's defaults
    study["seed"] = seed
    raw["objective"].update(max_epochs=max_epochs, target=target)
    name, _, checks = variant.partition("/")
    if checks:
        raw["objective"]["checks_per_epoch"] = int(checks.lstrip("k"))
    if name == "random":
        study.update(sampler="random", pruner="none")
    elif name == "grid":
        study.update(sampler="grid", pruner="none")
        raw["space"]["dense"] = dict(GRID_SPACE)
    else:
        sampler, _, pruner = name.partition("+")
        study.update(sampler=sampler, pruner=pruner)
    return raw


def trial_record(t: Any) -> dict[str, Any]:
    ua = t.user_attrs
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "epochs": ua.get("epochs") or 0,
        "epochs_to_target": ua.get("epochs_to_target"),
        "curve": [t.intermediate_values[s] for s in sorted(t.intermediate_values)],
        "params": t.params,
        "seconds": ua.get("seconds"),
    }


def run_one(variant: str, seed: int, budget: float, max_epochs: int, target: float, split: Any) -> dict[str, Any]:
    import optuna

    from hpo.config import parse_config
    from hpo.errors import TrialFailed
    from hpo.objective import Objective
    from hpo.search import make_pruner, make_sampler

    cfg = parse_config(variant_config(variant, seed, max_epochs, target), source=f"{variant} seed {seed}")
    study = optuna.create_study(direction="minimize", sampler=make_sampler(cfg), pruner=make_pruner(cfg))
    objective = Objective(cfg, split)
    grid_size = math.prod(len(v) for v in GRID_SPACE.values() if isinstance(v, list)) if variant == "grid" else None
    spent, epochs_to_3, trials = 0.0, None, []
    started = time.perf_counter()
    while spent < budget and (grid_size is None or len(trials) < grid_size):
        study.optimize(objective, n_trials=1, catch=(TrialFailed,))
        rec = trial_record(study.trials[-1])
        trials.append(rec)
        spent += rec["epochs"]
        ett = rec["epochs_to_target"]
        if epochs_to_3 is None and ett is not None and ett <= WITHIN:
            epochs_to_3 = round(spent, 3)
        print(
            f"  {variant} seed {seed} trial {rec['number']}: {rec['state'].lower()}, {rec['epochs']:g} epochs"
            f"{f', target at {ett:g}' if ett is not None else ''}; spent {spent:.2f}/{budget:g}",
            flush=True,
        )
    reached = [r["epochs_to_target"] for r in trials if r["epochs_to_target"] is not None]
    return {
        "variant": variant,
        "seed": seed,
        "budget": budget,
        "max_epochs": max_epochs,
        "target": target,
        "spent": round(spent, 3),
        "epochs_to_3": epochs_to_3,
        "best": min(reached) if reached else None,
        "n_trials": len(trials),
        "n_pruned": sum(r["state"] == "PRUNED" for r in trials),
        "n_reached": len(reached),
        "seconds": round(time.perf_counter() - started, 1),
        "trials": trials,
    }


def to_any(trials: list[dict[str, Any]]) -> float | None:
    """Total epochs spent when the first trial reached the target (in any number of epochs)."""
    spent = 0.0
    for r in trials:
        spent += r["epochs"]
        if r["epochs_to_target"] is not None:
            return round(spent, 3)
    return None


def replay(run: dict[str, Any], pruner_name: str, budget: float) -> dict[str, Any]:
    """What ``pruner_name`` would have spent on a ``random`` or ``grid`` run's trials, in order.

    Those samplers do not look at results, so the same trials come in the same order whatever
    the pruner does; what a pruner changes is the epochs each trial gets.
    """
    import optuna

    from hpo.config import parse_config
    from hpo.search import make_pruner

    raw = variant_config("tpe+" + pruner_name, run["seed"], run["max_epochs"], run["target"])
    cfg = parse_config(raw, source=f"replay {pruner_name}")
    study = optuna.create_study(direction="minimize", pruner=make_pruner(cfg))
    spent, epochs_to_3, reached, first = 0.0, None, [], None
    for rec in run["trials"]:
        if spent >= budget or not rec["curve"]:
            break
        t = study.ask()
        ett = rec["epochs_to_target"]
        for step, value in enumerate(rec["curve"]):
            t.report(value, step)
            last = step == len(rec["curve"]) - 1
            if last and ett is not None:  # the target check wins over pruning
                study.tell(t, value)
                spent += ett
                reached.append(ett)
                first = round(spent, 3) if first is None else first
                if epochs_to_3 is None and ett <= WITHIN:
                    epochs_to_3 = round(spent, 3)
                break
            if not last and t.should_prune():
                study.tell(t, state=optuna.trial.TrialState.PRUNED)
                spent += step + 1
                break
            if last:
                study.tell(t, value)
                spent += len(rec["curve"])
    return {
        "variant": f"{run['variant']}+{pruner_name} (replay)",
        "seed": run["seed"],
        "spent": round(spent, 3),
        "epochs_to_3": epochs_to_3,
        "epochs_to_any": first,
        "best": min(reached) if reached else None,
    }


def _median_range(values: list[float | None], budget: float) -> str:
    """Median and range; a run that never got there counts as '>budget'."""
    if not values:
        return "-"
    keyed = sorted(math.inf if v is None else v for v in values)
    med = statistics.median(keyed)
    fmt = lambda v: f">{budget:g}" if v == math.inf else f"{v:g}"  # noqa: E731
    return f"{fmt(med)} ({fmt(keyed[0])}–{fmt(keyed[-1])})" if len(keyed) > 1 else fmt(med)


def summarise(runs: list[dict[str, Any]], budget: float) -> dict[str, Any]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        rows.setdefault(r["variant"], []).append(r)
    for r in runs:
        r.setdefault("epochs_to_any", to_any(r.get("trials", [])))
    for r in [r for r in runs if r["variant"] in ("random", "grid")]:
        for p in PRUNERS:
            rows.setdefault(f"{r['variant']}+{p} (replay)", []).append(replay(r, p, budget))
    print(f"\nmedian over seeds (range); budget {budget:g} epochs; '>{budget:g}' = not within the budget")
    print(
        f"{'variant':<32} {'seeds':>5}  {'epochs until target in <=3':<28} {'epochs until target at all':<28} "
        f"{'best epochs-to-target':<22} {'epochs spent':<14} trials (pruned)"
    )
    out: dict[str, Any] = {}
    for name, rs in rows.items():
        e3 = _median_range([r["epochs_to_3"] for r in rs], budget)
        anyt = _median_range([r["epochs_to_any"] for r in rs], budget)
        best = _median_range([r["best"] for r in rs], budget)
        spent = _median_range([r["spent"] for r in rs], budget)
        trials = (
            ""
            if "n_trials" not in rs[0]
            else f"{statistics.median(r['n_trials'] for r in rs):g} ({statistics.median(r['n_pruned'] for r in rs):g})"
        )
        print(f"{name:<32} {len(rs):>5}  {e3:<28} {anyt:<28} {best:<22} {spent:<14} {trials}")
        keyed = [math.inf if r["epochs_to_3"] is None else r["epochs_to_3"] for r in rs]
        out[name] = {
            "seeds": len(rs),
            "epochs_to_3_median": None if statistics.median(keyed) == math.inf else statistics.median(keyed),
            "epochs_to_3": [r["epochs_to_3"] for r in rs],
            "epochs_to_any": [r["epochs_to_any"] for r in rs],
            "best": [r["best"] for r in rs],
            "spent": [r["spent"] for r in rs],
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS[:4]), help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=float, default=90, help="total training epochs per run")
    p.add_argument("--max-epochs", type=int, default=6, help="objective.max_epochs of every trial")
    p.add_argument("--target", type=float, default=0.88)
    p.add_argument("--out", type=Path, default=None, help="JSON-lines file of finished runs (resumable)")
    p.add_argument("--summary", action="store_true", help="only summarise --out")
    a = p.parse_args()
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            p.error(f"--variants: unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    seeds = [int(s) for s in a.seeds.split(",")]
    done: list[dict[str, Any]] = []
    if a.out and a.out.exists():
        done = [json.loads(line) for line in a.out.read_text().splitlines() if line.strip()]
    done = [r for r in done if r["budget"] == a.budget and r["max_epochs"] == a.max_epochs and r["target"] == a.target]
    if not a.summary:
        import optuna

        from hpo.config import parse_config
        from hpo.data import prepare

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        split = prepare(parse_config(variant_config("random", 0, a.max_epochs, a.target)).data)
        for seed in seeds:
            for v in variants:
                if any(r["variant"] == v and r["seed"] == seed for r in done):
                    continue
                run = run_one(v, seed, a.budget, a.max_epochs, a.target, split)
                done.append(run)
                if a.out:
                    with a.out.open("a") as f:
                        f.write(json.dumps(run) + "\n")
                print(
                    f"{v} seed {seed}: spent {run['spent']:g} epochs in {run['n_trials']} trials ({run['n_pruned']} pruned), "
                    f"first <= {WITHIN}-epoch trial after {run['epochs_to_3']} epochs, best {run['best']}, {run['seconds']:.0f} s",
                    flush=True,
                )
    result = summarise([r for r in done if r["seed"] in seeds], a.budget)
    print(json.dumps({"budget": a.budget, "max_epochs": a.max_epochs, "target": a.target, "variants": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
