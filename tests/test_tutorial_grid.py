"""The tables of scripts/tutorial_grid.py, from a grid frame like the one it reads from storage."""

from __future__ import annotations

import importlib.util

import matplotlib.image
import pandas as pd

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("tutorial_grid", REPO / "scripts" / "tutorial_grid.py")
tutorial_grid = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tutorial_grid)


def _grid() -> pd.DataFrame:
    rows = []
    for target, epochs in ((0.85, (4, 2, 2, 2)), (0.9, (None, 15, 9, 7))):
        for units, e in zip((16, 32, 64, 128), epochs, strict=True):
            rows.append(
                {
                    "target": target,
                    "units": units,
                    "n_params": 784 * units + units + 10 * units + 10,
                    "epochs_to_target": e,
                    "reached": e is not None,
                    "epochs_run": e or 30,
                    "best_accuracy": 0.8896 if e is None else target + 0.001,
                    "history": {"loss": [0.6] * (e or 30), "accuracy": [0.8] * (e or 30)},
                }
            )
    df = pd.DataFrame(rows)
    df["epochs_to_target"] = df["epochs_to_target"].astype("Int64")
    return df


def test_epochs_table_rows_and_unreached_cells():
    lines = tutorial_grid.epochs_table(_grid()).splitlines()
    assert lines[0] == "| units | parameters | target 0.85 | target 0.9 |"
    assert lines[2] == "| 16 | 12,730 | 4 | not in 30 (best 0.890) |"
    assert lines[5] == "| 128 | 101,770 | 2 | 7 |"
    assert len(lines) == 6


def test_study_names_and_summary_figure(tmp_path):
    assert [tutorial_grid.study_name("tutorial_grid", t) for t in (0.85, 0.9, 0.95)] == [
        "tutorial_grid_t085",
        "tutorial_grid_t090",
        "tutorial_grid_t095",
    ]
    tutorial_grid.plot_grid_summary(_grid(), 30, tmp_path / "s.png")
    assert matplotlib.image.imread(tmp_path / "s.png").shape[1] == 700
    paths = tutorial_grid.plot_grid_curves(_grid(), tmp_path / "curves")
    assert sorted(p.name for p in paths)[0] == "target-0.85-units-016.png" and len(paths) == 8
