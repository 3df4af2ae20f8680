"""The concurrency soak, short: 4 real workers on one PostgreSQL study, SIGKILLed and restarted.

``scripts/soak.py`` checks the invariants itself; this test runs it as a subprocess on a fresh
database and checks its figures again, so that a soak in which nothing was killed, or a kill
that left no FAIL-and-retried trial, cannot pass.  docs/cluster.md describes the long run.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, cli_env

WORKERS, TRIALS, KILLS = 4, 2, 2


def test_short_soak_with_sigkills_on_postgresql(postgres_url, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "soak.py"),
            "--storage",
            postgres_url,
            "--workers",
            str(WORKERS),
            "--trials",
            str(TRIALS),
            "--kill-every",
            "5",
            "--max-kills",
            str(KILLS),
            "--heartbeat-interval",
            "1",
            "--grace-period",
            "5",
            "--seed",
            "1",
            "--timeout",
            "600",
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr[-3000:]
    result = json.loads(lines[-1])
    assert out.returncode == 0 and result["ok"], out.stdout[-3000:] + out.stderr[-2000:]
    assert result["violations"] == []

    states = result["states"]
    n = result["trials"]
    # kills happened, each in a running trial, and each such trial was failed and retried once
    assert result["kills"] >= 1
    assert result["kills_in_trial"] >= 1
    assert result["restarts"] >= 1
    assert set(result["killed_trials"]) <= set(result["failed_trials"])
    # every FAIL is a killed trial or (on an overloaded machine) a live one whose heartbeats were
    # late; each was retried exactly once
    assert sorted(result["killed_trials"] + result["failed_while_alive"]) == result["failed_trials"]
    assert states["FAIL"] == len(result["failed_trials"]) == result["retries"]
    # every share done: workers x trials finished, plus the retries run after the grace period
    assert states["COMPLETE"] + states["PRUNED"] == WORKERS * TRIALS + result["retries_run_at_end"]
    assert n == states["COMPLETE"] + states["PRUNED"] + states["FAIL"]
    assert states["RUNNING"] == states["WAITING"] == 0
    assert result["lost"] == result["duplicate_numbers"] == result["missing_numbers"] == 0
    assert dict(result["worker_exit_codes"]).keys() <= {0, -9}
