from hpo.cli import cli

cli()
