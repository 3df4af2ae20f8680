"""The package's layout: light modules stay light, and no module imports one that imports it back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hpo"


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> hpo modules it imports, at the top or inside functions (``import`` and ``from``)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every module that can reach itself, with one path back."""
    found = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    found.append([*path, start])
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = import_graph(PACKAGE)
    assert {"hpo.config", "hpo.worker", "hpo.launch", "hpo.cli", "hpo.cli.study", "hpo.api"} <= set(graph)
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "hpo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from hpo.b import g\n")
    (pkg / "b.py").write_text("from hpo import a\n")
    assert cycles(import_graph(pkg))


@pytest.mark.parametrize("module", ["hpo", "hpo.config", "hpo.cli", "hpo.errors", "hpo.account"])
def test_light_modules_import_neither_optuna_nor_tensorflow(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('optuna', 'tensorflow', 'keras', 'sqlalchemy'))\n"
        "print(heavy[:5])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_public_api_is_exported() -> None:
    import hpo
    import hpo.reporting  # a submodule must not shadow a function of the API  # noqa: F401

    for name in ("load_config", "optimize", "report", "TargetPruning", "StudyConfig"):
        assert name in hpo.__all__ and callable(getattr(hpo, name))
    assert hpo.report.__module__ == "hpo.api" and hpo.optimize.__module__ == "hpo.api"
    assert not any((PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir() for name in hpo.__all__)
    with pytest.raises(AttributeError):
        hpo.no_such_name  # noqa: B018
