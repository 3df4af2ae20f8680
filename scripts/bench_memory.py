"""Resident memory of one worker over many trials.

Runs ``python -m hpo.run study`` (one worker, real dense trials of the main job's space with
artifacts on, small data so that a trial takes seconds) as a subprocess -- or, with ``--api``,
a Python script that calls ``hpo.optimize`` and then prints a line -- and samples the resident
set size (VmRSS) of that process and all its descendants (a worker that replaces itself keeps
its PID; the API's workers are child processes) every 0.25 s while
counting finished trials in the study's SQLite file; "RSS after n trials" is the largest
sample taken while n trials were finished, i.e. while the worker ran the next one.  Prints the RSS after 10, 25, 50, 75, 100 trials
and the growth from trial 10 to the last; the last line is a JSON object.

    python scripts/bench_memory.py                       # 100 trials, 2,000 images, 1 epoch
    python scripts/bench_memory.py --set study.recycle_after=0     # one process throughout
    python scripts/bench_memory.py --api --trials 30 --set study.recycle_after=3   # hpo.optimize from a script

Target: RSS after 100 trials <= RSS after 10 trials + 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "studies" / "fashion_dense.toml"
MARKS = (1, 10, 25, 50, 75, 100, 150, 200)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_rss_mb(pid: int) -> float | None:
    sizes = [r for r in (rss_mb(p) for p in descendants(pid)) if r is not None]
    return sum(sizes) if sizes else None


API_SCRIPT = """
import sys, hpo
study_file, url, artifacts, n = sys.argv[1:5]
cfg = hpo.load_config(study_file, sys.argv[5:])
study = hpo.optimize(cfg, storage=url, n_trials=int(n), artifact_dir=artifacts, progress=False)
print(f"optimize returned: {len(study.trials)} trials")
"""


def finished(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT count(*) FROM trials WHERE state IN ('COMPLETE','PRUNED','FAIL')").fetchone()[0]
    except sqlite3.Error:
        return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--max-epochs", type=int, default=1)
    p.add_argument("--api", action="store_true", help="call hpo.optimize from a script instead of the CLI")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="more study-file overrides")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "memory.db"
        sets = [f"data.train_size={a.train_size}", f"objective.max_epochs={a.max_epochs}", *a.overrides]
        if a.api:
            argv = [sys.executable, "-c", API_SCRIPT, str(STUDY), f"sqlite:///{db}", f"{tmp}/artifacts", str(a.trials), *sets]
        else:
            argv = [
                sys.executable, "-m", "hpo.run", "study", str(STUDY),
                "--storage", f"sqlite:///{db}", "--artifact-dir", f"{tmp}/artifacts",
                "--n-trials", str(a.trials), "--no-progress",
                *(x for o in sets for x in ("--set", o)),
            ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        at: dict[int, float] = {}
        peak = 0.0
        while proc.poll() is None:
            rss = tree_rss_mb(proc.pid)
            if rss is not None:
                peak = max(peak, rss)
                n = finished(db)
                at[n] = max(at.get(n, 0.0), rss)  # the most the worker held while running trial n + 1
            time.sleep(0.25)
        out = proc.stdout.read() if proc.stdout else ""
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            print(out[-2000:])
            raise SystemExit(f"the study exited {proc.returncode}")
        if a.api and "optimize returned" not in out:
            raise SystemExit("hpo.optimize did not return to its caller:\n" + out[-2000:])
    counts = sorted(at)

    def rss_after(n: int) -> float | None:
        """The largest RSS sampled while the worker ran the trial after the n-th finished one."""
        return next((at[c] for c in counts if c >= n), None)

    print(
        f"{'hpo.optimize' if a.api else 'CLI'}: {a.trials} trials of {STUDY.name} ({a.train_size} images, {a.max_epochs} epoch) in {seconds:.0f} s; overrides {a.overrides}"
    )
    print(f"{'trials':>6} {'RSS MB':>8}")
    for m in MARKS:
        if m <= a.trials and rss_after(m) is not None:
            print(f"{m:>6} {rss_after(m):>8.0f}")
    last_n = max(c for c in counts if c < a.trials) if counts else 0
    ten, end = rss_after(10), at.get(last_n)
    growth = None if ten is None or end is None else end - ten
    print(f"growth from trial 10 to trial {last_n}: {growth:.0f} MB (target <= 200); peak {peak:.0f} MB")
    print(
        json.dumps(
            {
                "trials": a.trials,
                "rss_mb": {str(m): round(rss_after(m), 1) for m in MARKS if m <= a.trials and rss_after(m) is not None},
                "growth_10_to_last_mb": None if growth is None else round(growth, 1),
                "last": last_n,
                "peak_mb": round(peak, 1),
                "seconds": round(seconds, 1),
                "overrides": a.overrides,
                "api": a.api,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
