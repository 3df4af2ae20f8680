"""A small CNN for Fashion-MNIST, built by the user's own function (studies/custom_cnn.toml).

hpo calls ``build(params, input_shape, n_classes)`` once per trial: ``params`` holds the trial's
values of ``[space.custom]`` (not the training keys learning_rate, optimizer, batch_size), and the
function returns an uncompiled ``keras.Model`` ending in ``n_classes`` softmax units.  hpo
compiles it with the trial's optimizer and learning rate and trains it.

The study file names it ``model.builder = "hpo.studies.custom_cnn:build"``: this file ships with
hpo as ``hpo.studies.custom_cnn``, so the study runs from any folder.  A builder of your own is a
module in the folder the command runs in (``builder = "mymodels:build"`` for ``mymodels.py``).
"""

import keras


def build(params: dict, input_shape: tuple, n_classes: int) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i in range(params["conv_layers"]):
        x = keras.layers.Conv2D(params["filters"] * 2**i, params["kernel_size"], padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(params["dense_units"], activation="relu")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="custom_cnn")
