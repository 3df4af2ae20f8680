"""The dense (MLP) family.

Per hidden layer, in this order::

    Dense(units_i, kernel_initializer)  ->  [BatchNormalization]  ->  activation  ->  [Dropout]

With batch-norm the Dense layer has no activation of its own and no bias (BatchNormalization's
offset replaces it), so the normalisation sees pre-activations as in Ioffe & Szegedy.  The
head is ``Dense(n_classes, softmax)`` with Keras' default initializer.
"""

from __future__ import annotations

import keras

from hpo.space import Params

__all__ = ["build_dense", "count_dense_params"]


def count_dense_params(params: Params, input_shape: tuple[int, ...], n_classes: int) -> int:
    """What :func:`build_dense` would give ``model.count_params()``, without building it.

    Per hidden layer of ``u`` units on ``n`` inputs: ``n * u`` weights plus ``u`` biases, or with
    batch-norm no bias and ``4 * u`` (gamma, beta, moving mean, moving variance); the head has
    ``n * n_classes + n_classes``.
    """
    a = params.arch
    n = 1
    for size in input_shape:
        n *= int(size)
    total = 0
    for units in a["units"]:
        total += n * units + (4 * units if a["batchnorm"] else units)
        n = units
    return total + n * n_classes + n_classes


def build_dense(params: Params, input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    a = params.arch
    layers: list[keras.layers.Layer] = [keras.Input(shape=input_shape), keras.layers.Flatten()]
    for i, units in enumerate(a["units"]):
        if a["batchnorm"]:
            layers += [
                keras.layers.Dense(units, use_bias=False, kernel_initializer=a["initializer"], name=f"dense_{i}"),
                keras.layers.BatchNormalization(name=f"batchnorm_{i}"),
                keras.layers.Activation(a["activation"], name=f"activation_{i}"),
            ]
        else:
            layers.append(
                keras.layers.Dense(units, activation=a["activation"], kernel_initializer=a["initializer"], name=f"dense_{i}")
            )
        if a["dropout"] > 0:
            layers.append(keras.layers.Dropout(a["dropout"], name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(n_classes, activation="softmax", name="head"))
    return keras.Sequential(layers, name="dense")
