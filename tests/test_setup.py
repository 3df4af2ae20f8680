"""``scripts/setup.sh``, the README's one quickstart command: what it runs as root and as a user
with sudo, without sudo, on a machine that has everything and on one that lacks python3-venv.

The script runs with ``--dry-run`` (it prints its commands instead of running them) from a copy
in a temporary folder (so it finds no ``.venv``), with stand-ins for ``id``, ``sudo`` and
``python3`` first on ``PATH``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "setup.sh"
HAS_DATASET = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file()


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def run_setup(tmp_path: Path, *args: str, uid: int, sudo: bool, venv_module: bool) -> subprocess.CompletedProcess:
    (tmp_path / "scripts").mkdir(exist_ok=True)
    shutil.copy(SCRIPT, tmp_path / "scripts" / "setup.sh")
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    _fake(fake, "id", f"echo {uid}")
    # python3 and python3.11: "import ensurepip, venv" works or fails as asked
    py = f'case "$*" in *ensurepip*) exit {0 if venv_module else 1};; esac; exit 0'
    _fake(fake, "python3", py)
    _fake(fake, "python3.11", py)
    if sudo:
        _fake(fake, "sudo", 'exec "$@"')
    # PATH: the stand-ins and links to the few real tools the script uses (no real sudo, apt-get)
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    for t in ("bash", "dirname", "sed"):
        if not (tools / t).exists():
            os.symlink(shutil.which(t), tools / t)
    path = os.pathsep.join([str(fake), str(tools)])
    return subprocess.run(
        [shutil.which("bash"), str(tmp_path / "scripts" / "setup.sh"), "--dry-run", *args],
        env={"PATH": path, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def commands(proc: subprocess.CompletedProcess) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(line.startswith("+ ") for line in lines), lines
    return [line[2:] for line in lines]


def test_the_script_parses() -> None:
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("uid", "prefix"), [(0, ""), (1000, "sudo ")])
def test_missing_packages_use_sudo_only_when_not_root(tmp_path: Path, uid: int, prefix: str) -> None:
    got = commands(run_setup(tmp_path, uid=uid, sudo=True, venv_module=False))
    need = "python3-venv" if HAS_DATASET else "dataset-fashion-mnist python3-venv"
    assert got == [
        f"{prefix}apt-get update -q",
        f"{prefix}apt-get install -y -q {need}",
        "python3.11 -m venv .venv",
        ".venv/bin/python -m pip install -q -e .[dev]",
        ".venv/bin/python -m hpo.run study studies/fashion_dense.toml",
    ]


@pytest.mark.skipif(not HAS_DATASET, reason="needs Debian's dataset-fashion-mnist installed (.ci/run installs it)")
@pytest.mark.parametrize("uid", [0, 1000])
def test_nothing_missing_runs_no_apt_get_and_passes_the_study_on(tmp_path: Path, uid: int) -> None:
    got = commands(run_setup(tmp_path, "quickstart", "--n-trials", "2", uid=uid, sudo=False, venv_module=True))
    assert got == [
        "python3.11 -m venv .venv",
        ".venv/bin/python -m pip install -q -e .[dev]",
        ".venv/bin/python -m hpo.run study quickstart --n-trials 2",
    ]
    assert not any(re.search(r"\b(sudo|apt-get)\b", c) for c in got)


def test_a_user_without_sudo_is_told_to_run_it_as_root(tmp_path: Path) -> None:
    proc = run_setup(tmp_path, "--no-run", uid=1000, sudo=False, venv_module=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "python3-venv" in proc.stderr and "sudo is not installed: run it as root" in proc.stderr


def test_no_run_sets_up_only(tmp_path: Path) -> None:
    got = commands(run_setup(tmp_path, "--no-run", uid=0, sudo=False, venv_module=True))
    assert got[-1] == ".venv/bin/python -m pip install -q -e .[dev]"
    assert not any("hpo.run" in c for c in got)


def test_the_readme_quickstart_is_this_one_command() -> None:
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert blocks[0].strip() == "bash scripts/setup.sh"
    assert not any("sudo" in b for b in blocks)  # root on a fresh Debian has none


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)")
@pytest.mark.parametrize("script", ["setup.sh", "slurm_local.sh", "slurm_array.sbatch"])
def test_shellcheck_finds_nothing(script: str) -> None:
    proc = subprocess.run(["shellcheck", str(REPO / "scripts" / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
