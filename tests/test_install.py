"""hpo as ``pip install .`` installs it: the ready study files ship inside the package
(``hpo.studies``), a bare name such as ``quickstart`` finds them from any folder, and ``--help``
names the command the way it was started (``hpo``, ``python -m hpo.run``).

The install is real: the project's files are copied to a temporary folder and installed with
``pip install --no-deps --target`` (a second or two; TensorFlow and the rest come from this
environment), then run from a folder outside the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hpo.api import load_config
from hpo.cli import build_parser, invoked_as
from hpo.config import resolve_study_file, shipped_study_files
from hpo.errors import ConfigError
from tests.conftest import REPO, STUDIES, cli_env

READY = sorted(p.stem for p in STUDIES.glob("*.toml"))


def test_every_package_of_hpo_is_listed_and_the_studies_ship_with_it() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "hpo").rglob("__init__.py")}
    assert set(setuptools["packages"]) == found | {"hpo.studies"}
    assert setuptools["package-dir"] == {"hpo.studies": "studies"}
    assert setuptools["package-data"]["hpo.studies"] == ["*.toml"]
    assert (STUDIES / "__init__.py").is_file() and (STUDIES / "custom_cnn.py").is_file()


def test_a_bare_name_finds_the_shipped_study_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sorted(shipped_study_files()) == READY and "quickstart" in READY
    monkeypatch.chdir(tmp_path)
    found = Path(resolve_study_file("quickstart"))
    assert found.name == "quickstart.toml" and found.read_bytes() == (STUDIES / "quickstart.toml").read_bytes()
    cfg = load_config("tiny", ["study.n_trials=1"])
    assert cfg.study.name == "tiny" and cfg.source == str(shipped_study_files()["tiny"])
    # a path, a name with a suffix, and a file of that name here are taken as they are
    for given in ("quickstart.toml", "./quickstart", "sub/quickstart"):
        assert resolve_study_file(given) == given
    (tmp_path / "quickstart").write_text('[study]\nname = "mine"\n')
    assert resolve_study_file("quickstart") == "quickstart"
    assert load_config("quickstart").study.name == "mine"


def test_an_unknown_bare_name_lists_the_shipped_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("quickstrat")
    assert str(info.value) == f"quickstrat: study file not found (a bare name reads a shipped one: {', '.join(READY)})"
    with pytest.raises(ConfigError) as info:
        load_config("quickstrat.toml")
    assert str(info.value) == "quickstrat.toml: study file not found"


def test_the_custom_cnn_builder_is_importable_by_its_installed_name() -> None:
    cfg = load_config(STUDIES / "custom_cnn.toml")
    assert cfg.model.builder == "hpo.studies.custom_cnn:build"
    import importlib.util

    assert Path(importlib.util.find_spec("hpo.studies.custom_cnn").origin).resolve() == (STUDIES / "custom_cnn.py").resolve()


@pytest.mark.parametrize(
    ("argv0", "prog"),
    [
        ("/usr/local/bin/hpo", "hpo"),
        ("hpo", "hpo"),
        (str(REPO / "hpo" / "run.py"), "python -m hpo.run"),
        (str(REPO / "hpo" / "__main__.py"), "python -m hpo"),
        ("/x/site-packages/pytest/__main__.py", "python -m hpo.run"),
    ],
)
def test_the_program_name_follows_how_it_was_started(argv0: str, prog: str) -> None:
    assert invoked_as(argv0) == prog
    assert build_parser(invoked_as(argv0)).format_usage().startswith(f"usage: {prog} [-h]")


def _copy_project(dest: Path) -> Path:
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "hpo", src / "hpo", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "studies").mkdir()
    for p in [*STUDIES.glob("*.toml"), *STUDIES.glob("*.py")]:
        shutil.copy(p, src / "studies" / p.name)
    return src


@pytest.mark.slow
def test_pip_install_then_hpo_study_quickstart_from_another_folder(tmp_path: Path) -> None:
    src, target, away = _copy_project(tmp_path), tmp_path / "site", tmp_path / "away"
    away.mkdir()
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    shipped = sorted(p.name for p in (target / "hpo" / "studies").iterdir() if p.is_file())
    assert shipped == sorted(["__init__.py", "custom_cnn.py", *(f"{n}.toml" for n in READY)])

    env = cli_env()
    env["PYTHONPATH"] = str(target)  # the installed copy, not the repository
    script = str(target / "bin" / "hpo")

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=away, env=env, capture_output=True, text=True, timeout=300)

    where = run(
        sys.executable,
        "-c",
        "import importlib.util, hpo; from hpo.config import resolve_study_file as r; "
        "print(hpo.__file__); print(r('quickstart')); print(importlib.util.find_spec('hpo.studies.custom_cnn').origin)",
    )
    assert where.returncode == 0, where.stderr[-2000:]
    assert [Path(line).is_relative_to(target) for line in where.stdout.splitlines()] == [True, True, True], where.stdout

    usage = run(script, "--help")
    assert usage.returncode == 0 and usage.stdout.startswith("usage: hpo [-h]"), usage.stdout + usage.stderr
    assert run(script, "study", "--help").stdout.startswith("usage: hpo study ")

    proc = run(
        script,
        "study",
        "quickstart",
        "--n-trials",
        "1",
        "--no-progress",
        "--no-artifacts",
        "--set",
        "data.train_size=300",
        "--set",
        "data.validation_size=300",
        "--set",
        "objective.max_epochs=1",
        "--set",
        "study.confirm_seeds=0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "study 'quickstart' in sqlite:///studies/hpo.db" in proc.stdout, proc.stdout
    assert "1 trial asked, 1 run" in proc.stdout and (away / "studies" / "hpo.db").is_file()
