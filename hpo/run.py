"""``python -m hpo.run COMMAND ...``: the command line (see :mod:`hpo.cli`)."""

from hpo.cli import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
