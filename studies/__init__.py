"""The ready study files, installed with hpo as the package data of ``hpo.studies``.

``hpo study quickstart`` (a bare name) reads ``quickstart.toml`` from here; ``custom_cnn.py`` is the
builder ``studies/custom_cnn.toml`` names as ``hpo.studies.custom_cnn:build``.
"""
