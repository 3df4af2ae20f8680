"""Study names (and other strings) from a storage are untrusted: they never choose a folder outside
the one the user gave, never reach a terminal unescaped, and a name too long for a storage or a
file system is one line, not a traceback.

The hostile studies are made with plain Optuna in a real SQLite file, as anyone sharing a storage
could; ``report`` and ``list`` run as real subprocesses on them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from hpo.errors import ConfigError, HpoError
from hpo.names import (
    MAX_NAME_LENGTH,
    check_new_name,
    check_study_name,
    folder_name,
    md_code,
    md_text,
    name_folder,
    new_name_problem,
    printable,
)
from hpo.study import STUDY_ATTR
from tests.conftest import run_cli

FORGED = "\x1b[2K\rhpo: error: forged"
LONG = "x" * 600
HOSTILE = [
    "..",
    ".",
    "../../escape",
    "/etc/passwd",
    "a/b",
    "a\\b",
    FORGED,
    "a\x00b",
    "line\nbreak",
    LONG,
    "\u00e9t\u00e9 \u6570\u5b57",
    "\u202egnp.exe",
    "",
    " ",
    "-rf",
    ".hidden",
    "$\\frac{a}{$ \u6570\u5b57",
    "\x9b31m",
]
IDENTITY = {"objective.monitor": "val_accuracy", "objective.target": 0.9, "objective.max_epochs": 3, "data.dataset": "digits"}
HISTORY = {"loss": [0.5, 0.4], "accuracy": [0.8, 0.9], "val_loss": [0.6, 0.5], "val_accuracy": [0.85, 0.95]}

BASE = """\
[study]
name = "base"
sampler = "random"
pruner = "none"
n_trials = 1

[data]
dataset = "digits"
train_size = 300

[objective]
target = 0.99
max_epochs = 1

[space.dense]
units = [16, 32]
"""


def hostile_study(url: str, name: str, **attrs) -> None:
    """A study anyone could make in a shared storage: hpo's settings, one finished trial, any name."""
    study = optuna.create_study(storage=url, study_name=name, direction="minimize")
    study.set_user_attr(STUDY_ATTR, {"identity": IDENTITY, "data": {"dataset": "digits"}})
    trial = study.ask()
    trial.suggest_categorical("units_l0", [16, 32])
    ua = dict(epochs_to_target=2, reached_target=True, stop_reason="target", family="dense", n_params=100, epochs=2)
    for key, value in {**ua, "history": HISTORY, **attrs}.items():
        trial.set_user_attr(key, value)
    study.tell(trial, 2.0)


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def terminal_safe(text: str) -> bool:
    """No character that could move the cursor, clear a line or start an escape sequence."""
    return all(ch == "\n" or ch.isprintable() for ch in text)


# --------------------------------------------------------------------------------------------
# The functions


@pytest.mark.parametrize("name", HOSTILE, ids=[f"{i}-{printable(n)[:20]}" for i, n in enumerate(HOSTILE)])
def test_folder_name_is_one_safe_component_inside_the_folder(name: str, tmp_path: Path) -> None:
    folder = folder_name(name)
    assert folder not in ("", ".", "..") and not folder.startswith((".", "-"))
    assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in folder)
    assert len(folder.encode()) <= 100  # far under NAME_MAX = 255 bytes
    path = name_folder(tmp_path, name, "--out")
    path.mkdir()  # the file system takes it
    assert path.parent == tmp_path and Path(os.path.realpath(path)).parent == Path(os.path.realpath(tmp_path))
    # a name needing no change is its own folder, any other gets a hash of the whole name
    plain = name.isascii() and name.replace("_", "a").replace("-", "a").replace(".", "a").isalnum() and name[0] not in ".-"
    if plain and len(name) <= 80:
        assert folder == name
    else:
        assert folder.endswith("-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12])


def test_different_names_never_share_a_folder() -> None:
    near = ["a b", "a/b", "a\\b", "a:b", "a\x1bb", "a_b", "a__b", "a\u00e9b", "A b", "a b ", " a b"]
    near += [LONG, LONG[:-1] + "y", "x" * 81, "x" * 80, "x" * 80 + "-"]
    near += [folder_name("a b"), folder_name(LONG)]  # a name made to look like another's folder
    folders = [folder_name(n) for n in near]
    assert len(set(folders)) == len(near), dict(zip(near, folders, strict=True))
    assert folder_name("fashion_dense") == "fashion_dense" and folder_name("rep-2.1") == "rep-2.1"


def test_a_symbolic_link_placed_in_the_folder_does_not_lead_out(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "reports" / "rep").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(HpoError, match=r"--out: .*leads out of .*pass --out DIR"):
        name_folder(tmp_path / "reports", "rep", "--out")
    assert name_folder(tmp_path / "reports", "other", "--out") == tmp_path / "reports" / "other"


def test_printable_escapes_every_control_character() -> None:
    assert printable(FORGED) == "\\x1b[2K\\rhpo: error: forged"
    assert printable("a\x00b\nc\x7f\x9b\u202e\u2028\U000e0001") == "a\\x00b\\nc\\x7f\\x9b\\u202e\\u2028\\U000e0001"
    for text in ("rep", "\u00e9t\u00e9 \u6570\u5b57", "a b", "a\\b", "$x$", "'quoted'"):
        assert printable(text) == text
    assert all(terminal_safe(printable(n)) for n in HOSTILE)


def test_new_names_are_bounded_and_printable() -> None:
    for ok in ("rep", "x" * MAX_NAME_LENGTH, "\u00e9t\u00e9 \u6570\u5b57", "a/b", "..", "$x$"):
        assert new_name_problem(ok) is None and check_new_name(ok) == ok
    problems = {
        LONG: "at most 512 characters, but got 600",
        FORGED: "must be printable",
        "a\x00b": "NUL",
        "line\nbreak": "must be printable",
        "\u202egnp.exe": "must be printable",
        "": "non-empty",
        "   ": "non-empty",
        None: "non-empty",
    }
    for name, needle in problems.items():
        with pytest.raises(ConfigError, match="--study-name: .*" + needle) as e:
            check_new_name(name)
        assert terminal_safe(str(e.value)) and len(str(e.value)) < 200
    # names to look up may be long or odd (they exist); only NUL and empty are refused
    assert check_study_name(LONG) == LONG and check_study_name(FORGED) == FORGED
    with pytest.raises(ConfigError, match="STUDY_NAME: must not contain a NUL"):
        check_study_name("a\x00b")


def test_markdown_shows_names_as_text() -> None:
    assert md_code("rep") == "`rep`" and md_code("a`b") == "``a`b``" and md_code("`x") == "`` `x ``"
    assert md_text("<img src=x onerror=alert(1)>") == "\\<img src=x onerror=alert(1)\\>"
    assert md_text("a|b") == "a\\|b" and md_text("[x](http://e)") == "\\[x\\](http://e)"
    assert md_text("max_epochs 0.001 he_normal") == "max_epochs 0.001 he_normal"  # plain words stay plain
    assert "\n" not in md_text("line\nbreak") and "\x1b" not in md_code(FORGED)


def test_tensorboard_folder_of_a_hostile_name_stays_inside(tmp_path: Path) -> None:
    from hpo.artifacts import tensorboard_factory

    trial = optuna.create_study().ask()
    for name in ("../../escape", str(tmp_path / "abs"), FORGED, LONG, ".."):
        callback = tensorboard_factory(tmp_path / "tb", name)(trial)
        log_dir = Path(callback.log_dir)
        assert log_dir == tmp_path / "tb" / folder_name(name) / "trial-0000"
    assert files_under(tmp_path) == set()  # nothing written before a trial trains


# --------------------------------------------------------------------------------------------
# The commands


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An SQLite storage holding hpo studies with hostile names, and one with hostile values."""
    root = tmp_path_factory.mktemp("names")
    url = f"sqlite:///{root / 'shared.db'}"
    names = [n for n in HOSTILE if n not in ("", " ")] + [str(root / "abs"), "ok"]
    for name in names:
        hostile_study(url, name)
    hostile_study(
        url,
        "values",
        epochs_to_target="\x1b[31mred",  # a value, not a number: shown escaped, left out of the numbers
        n_params="\x1b[1Amany",
        fixed_params={"units\x1b[2J": "\x1b]0;title\x07"},
        history="\x1b[2Knot a history",
    )
    optuna.load_study(study_name="values", storage=url).set_user_attr("answer", {"epochs": "\x1b[2K", "median": 1})
    return {"root": root, "url": url, "names": names}


def test_list_shows_every_name_and_value_escaped(hostile: dict) -> None:
    out = run_cli("list", "--storage", hostile["url"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr == "" and terminal_safe(out.stdout)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("study") and len(lines) == 1 + len(hostile["names"]) + 1
    assert not any(line.startswith("hpo:") for line in lines)
    shown = {line.split("  ")[0].rstrip() for line in lines[1:]}
    assert shown == {printable(name) for name in [*hostile["names"], "values"]}
    values = next(line for line in lines if line.startswith("values "))
    assert "\\x1b[31mred" in values and values.rstrip().endswith("?")  # the unreadable answer


def test_report_default_folder_is_one_folder_inside_reports(hostile: dict, tmp_path: Path) -> None:
    """Hostile names as real ``report`` commands: files only in ``reports/<one safe folder>``."""
    before = files_under(hostile["root"])
    names = ("../../escape", str(hostile["root"] / "abs"), FORGED, LONG, "$\\frac{a}{$ \u6570\u5b57")  # no math, no glyph warning
    for name in names:
        out = run_cli("report", name, "--storage", hostile["url"], cwd=tmp_path)
        assert out.returncode == 0, (name, out.stderr[-2000:])
        assert out.stderr == "" and terminal_safe(out.stdout)
        folder = folder_name(name)
        assert out.stdout.startswith(f"reports/{folder}: trials.csv (1 rows), summary.md, 6 figures")
        written = files_under(tmp_path / "reports" / folder)
        assert {"trials.csv", "summary.md", "history.png", "best_curves.png"} <= written
        summary = (tmp_path / "reports" / folder / "summary.md").read_text()
        assert summary.startswith(f"# Study {md_code(name)}\n") and "\x1b" not in summary
    assert {p.name for p in (tmp_path / "reports").iterdir()} == {folder_name(n) for n in names}
    assert [p.name for p in tmp_path.iterdir()] == ["reports"]
    assert files_under(hostile["root"]) == before  # nothing beside the storage (no "abs" folder)


def test_report_through_the_api_and_hostile_values(hostile: dict, tmp_path: Path, monkeypatch, capsys) -> None:
    import hpo

    monkeypatch.chdir(tmp_path)
    for name in ("..", "a/b", "a\\b", "line\nbreak", "\x9b31m", ".hidden", "-rf", "\u202egnp.exe", "\u00e9t\u00e9 \u6570\u5b57"):
        done = hpo.report(name, storage=hostile["url"])
        assert done["out"] == Path("reports") / folder_name(name) and (done["out"] / "summary.md").is_file()
    assert capsys.readouterr().err == ""
    done = hpo.report("values", storage=hostile["url"])
    err = capsys.readouterr().err  # stored values that are no numbers: left empty, said once each kind
    assert terminal_safe(err) and all(line.startswith("hpo: warning: ") for line in err.splitlines())
    assert "n_params='\\x1b[1Amany'" in err and "stored history is not a Keras history" in err
    assert "answer cannot be computed" in err
    frame = (done["out"] / "trials.csv").read_text()
    assert "\x1b" not in frame.split("\n")[0]  # column names escaped
    summary = (done["out"] / "summary.md").read_text()
    assert "\x1b" not in summary and "\\x1b" in summary  # escaped, still there to read
    assert "## Answer" in summary  # an unreadable stored answer costs the answer, not the summary
    with pytest.raises(ConfigError, match="STUDY_NAME: must not contain a NUL"):
        hpo.report("a\x00b", storage=hostile["url"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]


def test_unknown_name_lists_the_names_escaped_on_one_line(hostile: dict, tmp_path: Path) -> None:
    for command in ("report", "confirm"):
        out = run_cli(command, FORGED + "x", "--storage", hostile["url"], cwd=tmp_path)
        assert out.returncode == 2 and out.stdout == ""
        lines = out.stderr.splitlines()
        assert len(lines) == 1 and terminal_safe(out.stderr), out.stderr
        assert lines[0].startswith("hpo: error: no study named '\\x1b[2K\\rhpo: error: forgedx'")
        assert "\\x1b[2K\\rhpo: error: forged, " in lines[0]
    assert list(tmp_path.iterdir()) == []


def _tables(url: str) -> list[str]:
    engine = sqlalchemy.create_engine(url)
    try:
        return sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
def test_a_600_character_name_is_one_line_and_creates_nothing(backend: str, request, tmp_path: Path) -> None:
    """Optuna's study_name column holds 512 characters: PostgreSQL and MariaDB gave a traceback."""
    url = {
        "sqlite": lambda: f"sqlite:///{tmp_path / 'new.db'}",
        "postgres": lambda: request.getfixturevalue("postgres_url"),
        "mysql": lambda: request.getfixturevalue("mysql_url"),
    }[backend]()
    (tmp_path / "base.toml").write_text(BASE)
    work = tmp_path / "work"
    work.mkdir()
    for how, extra in {
        "--study-name": ("--study-name", LONG),
        "study.name": ("--set", f"study.name={LONG}"),
    }.items():
        out = run_cli("study", str(tmp_path / "base.toml"), "--storage", url, "--no-progress", *extra, cwd=work)
        assert out.returncode == 2, out.stderr[-2000:]
        lines = (out.stdout + out.stderr).strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert ": error: " in lines[0] and how in lines[0] and "at most 512 characters, but got 600" in lines[0]
    assert list(work.iterdir()) == []
    if backend == "sqlite":
        assert not (tmp_path / "new.db").exists()
    else:
        assert _tables(url) == []


def test_damaged_settings_of_a_study_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hpo

    url = f"sqlite:///{tmp_path / 'd.db'}"
    for name, attr in {
        "no-target": {"identity": {"objective.monitor": "val_accuracy"}},
        "words": {"identity": "\x1b[2K"},
    }.items():
        optuna.create_study(storage=url, study_name=name).set_user_attr(STUDY_ATTR, attr)
        monkeypatch.chdir(tmp_path)
        with pytest.raises(HpoError, match=f"study '{name}': its 'hpo' user attribute is damaged") as e:
            hpo.report(name, storage=url)
        assert terminal_safe(str(e.value))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("d.db")) == []
