"""``python tests/held_worker.py GATE_DIR COMMAND ...``: ``python -m hpo.run COMMAND ...`` whose
trials stop at the start of their second epoch -- after the first epoch's cost is reported and
stored -- until the test creates ``GATE_DIR/release``.

A trial that arrives at the gate creates ``GATE_DIR/running-N`` (N: its number), so a test acts
on a trial that is RUNNING with a report for as long as it needs, instead of racing a training
that usually outlasts it.  The worker is the real one (``hpo.cli.main``); the gate is one more
Keras callback of each trial, as ``keras_callbacks`` of :class:`hpo.objective.Objective` takes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

GATE = Path(sys.argv[1])
WAIT = 600  # seconds at most: a forgotten release must not hang the suite


def _gate(trial):
    import keras

    class Gate(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch != 1:
                return
            (GATE / f"running-{trial.number}").touch()
            deadline = time.monotonic() + WAIT
            while not (GATE / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    return Gate()


def main() -> None:
    import hpo.objective

    original = hpo.objective.Objective.__init__

    def with_gate(self, *args, keras_callbacks=(), **kwargs):
        original(self, *args, keras_callbacks=(*keras_callbacks, _gate), **kwargs)

    hpo.objective.Objective.__init__ = with_gate
    from hpo.cli import cli

    sys.argv = ["hpo.run", *sys.argv[2:]]
    cli()


if __name__ == "__main__":
    main()
