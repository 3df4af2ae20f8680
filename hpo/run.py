"""``python -m hpo.run COMMAND ...``: the command line (see :mod:`hpo.cli`)."""

import sys

try:
    from hpo.cli import cli, main
except KeyboardInterrupt:  # Ctrl-C while Python imports the command line: no traceback
    sys.exit(130)

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
