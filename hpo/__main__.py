from hpo.run import cli

cli()
