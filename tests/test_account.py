"""One command, one account: what a command asked for and ran, across its processes."""

from __future__ import annotations

import pytest

from hpo.account import ACCOUNT_ENV, Account


def test_an_account_travels_through_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = Account(asked=30, ran=12, searched=10, processes=2, banner=True)
    monkeypatch.setenv(ACCOUNT_ENV, first.to_json())
    inherited = Account.inherited(asked=20)  # a recycled process asks for the 20 still to run
    assert inherited == first  # the command's own numbers, not the process's
    assert Account.inherited(asked=5).asked == 5  # taken: the next command starts its own
    monkeypatch.setenv(ACCOUNT_ENV, "not json")
    broken = Account.inherited(asked=4)
    assert (broken.asked, broken.ran, broken.banner) == (4, 0, False)  # a new account, not an error


def test_the_trials_line_counts_repeats_and_processes() -> None:
    a = Account(asked=30, ran=38, searched=30, processes=4)
    line = a.trials_line()
    assert line.startswith("30 trials asked, 38 run (30 searched + 8 repeats) in ")
    assert line.endswith(" s in 4 processes")
    b = Account(asked=None, ran=2, searched=2)
    assert b.trials_line().startswith("unlimited trials asked, 2 run in ") and "processes" not in b.trials_line()
    b.add(a)
    assert (b.ran, b.searched) == (40, 32)
