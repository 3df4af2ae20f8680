"""Warm-start candidates: how many epochs configurations need to reach the target, on fresh seeds,
on each of the search benchmark's questions.

A study file's ``enqueue`` configurations are hpo's first trials: a fast and steady one gives the
search a confirmed answer (and capping a bound) after a few epochs.  This script re-trains
configurations by the search benchmark's plain Keras code (``bench_search.Retrainer``, the same
that judges every tool's answer) on seeds 20000, 20001, ... (not the judge's 10000, ...), and
prints per question the runs' epochs-to-target (max_epochs + 1: not reached), median and mean.

    python scripts/bench_warm_start.py                                   # the study file's enqueue
    python scripts/bench_warm_start.py --candidates docs/bench/warm_start_candidates.json
    python scripts/bench_warm_start.py --question quickstart --seeds 5

``--candidates``: a JSON list of objects, each a configuration's parameters plus an optional
``name``.  Results are appended to ``--out`` (JSON lines; default docs/bench/warm_start.jsonl)
and a configuration measured there already on a question and seed is not trained again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_search  # noqa: E402

DEFAULT_OUT = bench_search.REPO / "docs" / "bench" / "warm_start.jsonl"
SEED_BASE = 20_000


def study_enqueue() -> list[dict[str, Any]]:
    with open(bench_search.STUDY_FILE, "rb") as f:
        enqueue = tomllib.load(f)["study"].get("enqueue", [])
    return [{"name": f"enqueue[{i}]", **c} for i, c in enumerate(enqueue)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--candidates", type=Path, default=None, help="JSON list of configurations (default: the study file's enqueue)"
    )
    p.add_argument("--question", default="quickstart,main", help=f"comma-separated, from {', '.join(bench_search.QUESTIONS)}")
    p.add_argument("--seeds", type=int, default=5, help="fresh seeds per configuration and question")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON-lines file of measured runs")
    a = p.parse_args()
    candidates = json.loads(a.candidates.read_text()) if a.candidates else study_enqueue()
    qnames = [q.strip() for q in a.question.split(",") if q.strip()]
    for q in qnames:
        if q not in bench_search.QUESTIONS:
            p.error(f"--question: unknown question {q!r}; choose from {', '.join(bench_search.QUESTIONS)}")
    done: dict[tuple[str, str, int], int] = {}
    if a.out.exists():
        for line in a.out.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["question"], json.dumps(r["params"], sort_keys=True), r["seed"])] = r["epochs"]

    from hpo.data import prepare
    from hpo.quiet import import_tensorflow

    import_tensorflow()
    seeds = [SEED_BASE + i for i in range(a.seeds)]
    for qname in qnames:
        question = bench_search.QUESTIONS[qname]
        split = prepare(bench_search.hpo_config(question, 0).data)
        retrain = bench_search.Retrainer(question, split)
        for cand in candidates:
            params = bench_search.canonical({k: v for k, v in cand.items() if k != "name"})
            key = json.dumps(params, sort_keys=True)
            runs = []
            for seed in seeds:
                if (qname, key, seed) not in done:
                    epochs = retrain(params, seed)
                    done[(qname, key, seed)] = epochs
                    a.out.parent.mkdir(parents=True, exist_ok=True)
                    with a.out.open("a") as f:
                        f.write(
                            json.dumps(
                                {"question": qname, "name": cand.get("name"), "params": params, "seed": seed, "epochs": epochs}
                            )
                            + "\n"
                        )
                runs.append(done[(qname, key, seed)])
            print(
                f"{qname:<11} {cand.get('name', '?'):<28} runs {runs}  median {statistics.median(runs):g}  "
                f"mean {statistics.fmean(runs):.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
