"""TensorFlow imported without the lines its C++ start-up writes to the terminal.

Those lines (absl's "All log messages before absl::InitializeLog()", oneDNN, CUDA stubs) ignore
every log-level setting, so the import runs with file descriptor 2 pointed at ``/dev/null``.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["import_tensorflow"]


def import_tensorflow() -> None:
    """Import TensorFlow quietly (once per process).  Python errors still raise, and print once
    stderr is back."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
