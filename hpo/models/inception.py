"""The Inception family: a small Inception-style convolutional network.

Three blocks, each a registered ``keras.layers.Layer`` subclass that validates its arguments in
``__init__``, creates its weights in ``build`` and round-trips through ``get_config``:

* :class:`ConvBlock` -- ``Conv2D -> [BatchNormalization] -> activation``;
* :class:`InceptionBlock` -- a 1x1 and a 3x3 :class:`ConvBlock` side by side, concatenated
  (same padding, so the map keeps its size; channels = filters_1x1 + filters_3x3);
* :class:`DownsampleBlock` -- a stride-2 'valid' 3x3 :class:`ConvBlock` next to a 3x3/2
  max-pool, concatenated (H -> (H - 3) // 2 + 1; channels = filters + input channels).

The network (:func:`build_inception`)::

    stem ConvBlock(3x3)
    -> for each stage: InceptionBlock x blocks_s{i} -> DownsampleBlock(down_filters_s{i})
    -> GlobalAveragePooling2D -> [Dropout] -> Dense(n_classes, softmax)

The convolutions keep their bias when batch-norm is on, as in the network this family comes
from; that is what makes its parameter count 586,730 for 28x28x1 images and 10 classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from hpo.space import Params

__all__ = [
    "ConvBlock",
    "DownsampleBlock",
    "InceptionBlock",
    "build_inception",
    "count_inception_params",
    "downsampled_size",
]


def downsampled_size(size: int) -> int:
    """Height (or width) after a 3x3 stride-2 'valid' convolution or pooling; 0 if it does not fit."""
    return max(0, (size - 3) // 2 + 1)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, but got {name}={value!r}.")
    return value


def _momentum(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"batchnorm_momentum must be in (0, 1), but got batchnorm_momentum={value!r}.")
    return float(value)


def _pair(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be an integer or a pair of integers, but got {name}={value!r}.")
    return tuple(_positive_int(name, v) for v in value)  # type: ignore[return-value]


@keras.saving.register_keras_serializable(package="hpo")
class ConvBlock(keras.layers.Layer):
    """``Conv2D -> [BatchNormalization] -> activation``.

    Args:
        filters: number of convolution filters.
        kernel_size: an integer or a pair.
        strides: an integer or a pair.
        padding: ``"same"`` or ``"valid"``.
        batchnorm: put a BatchNormalization between the convolution and the activation.
        batchnorm_momentum: momentum of its moving mean and variance (Keras' default is 0.99;
            0.9 lets the statistics that validation uses catch up within a short epoch).
        activation: any name ``keras.activations.get`` knows.
        kernel_initializer: any identifier ``keras.initializers.get`` knows.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int] = 3,
        strides: int | Sequence[int] = 1,
        padding: str = "same",
        batchnorm: bool = True,
        activation: str = "relu",
        kernel_initializer: Any = "glorot_uniform",
        batchnorm_momentum: float = 0.99,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.filters = _positive_int("filters", filters)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', but got {padding=}.")
        self.padding = padding
        if not isinstance(batchnorm, bool):
            raise ValueError(f"batchnorm must be True or False, but got {batchnorm=}.")
        self.batchnorm = batchnorm
        self.batchnorm_momentum = _momentum(batchnorm_momentum)
        keras.activations.get(activation)  # raises ValueError for an unknown name
        self.activation = activation
        self.kernel_initializer = keras.initializers.serialize(keras.initializers.get(kernel_initializer))
        self.conv = keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            kernel_initializer=keras.initializers.deserialize(self.kernel_initializer),
            name="conv",
        )
        self.norm = keras.layers.BatchNormalization(momentum=self.batchnorm_momentum, name="batchnorm") if batchnorm else None
        self.act = keras.layers.Activation(activation, name="activation")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.conv.build(input_shape)
        if self.norm is not None:
            self.norm.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = self.conv(inputs)
        if self.norm is not None:
            x = self.norm(x, training=training)
        return self.act(x)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return self.conv.compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "batchnorm": self.batchnorm,
            "batchnorm_momentum": self.batchnorm_momentum,
            "activation": self.activation,
            "kernel_initializer": self.kernel_initializer,
        }


class _Branches(keras.layers.Layer):
    """Shared plumbing: the block's ConvBlocks get the same activation/initializer/batch-norm."""

    def __init__(self, batchnorm: bool, activation: str, kernel_initializer: Any, batchnorm_momentum: float, **kwargs: Any):
        super().__init__(**kwargs)
        if not isinstance(batchnorm, bool):
            raise ValueError(f"batchnorm must be True or False, but got {batchnorm=}.")
        keras.activations.get(activation)
        self.batchnorm = batchnorm
        self.batchnorm_momentum = _momentum(batchnorm_momentum)
        self.activation = activation
        self.kernel_initializer = keras.initializers.serialize(keras.initializers.get(kernel_initializer))

    def _conv(self, filters: int, kernel_size: int, strides: int, padding: str, name: str) -> ConvBlock:
        return ConvBlock(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            batchnorm=self.batchnorm,
            activation=self.activation,
            kernel_initializer=self.kernel_initializer,
            batchnorm_momentum=self.batchnorm_momentum,
            name=name,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "batchnorm": self.batchnorm,
            "batchnorm_momentum": self.batchnorm_momentum,
            "activation": self.activation,
            "kernel_initializer": self.kernel_initializer,
        }


@keras.saving.register_keras_serializable(package="hpo")
class InceptionBlock(_Branches):
    """A 1x1 and a 3x3 :class:`ConvBlock` on the same input, concatenated along channels."""

    def __init__(
        self,
        filters_1x1: int,
        filters_3x3: int,
        batchnorm: bool = True,
        activation: str = "relu",
        kernel_initializer: Any = "glorot_uniform",
        batchnorm_momentum: float = 0.99,
        **kwargs: Any,
    ):
        super().__init__(batchnorm, activation, kernel_initializer, batchnorm_momentum, **kwargs)
        self.filters_1x1 = _positive_int("filters_1x1", filters_1x1)
        self.filters_3x3 = _positive_int("filters_3x3", filters_3x3)
        self.branch_1x1 = self._conv(self.filters_1x1, 1, 1, "same", "branch_1x1")
        self.branch_3x3 = self._conv(self.filters_3x3, 3, 1, "same", "branch_3x3")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.branch_1x1.build(input_shape)
        self.branch_3x3.build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        a = self.branch_1x1(inputs, training=training)
        b = self.branch_3x3(inputs, training=training)
        return keras.ops.concatenate([a, b], axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.filters_1x1 + self.filters_3x3)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters_1x1": self.filters_1x1, "filters_3x3": self.filters_3x3}


@keras.saving.register_keras_serializable(package="hpo")
class DownsampleBlock(_Branches):
    """A stride-2 'valid' 3x3 :class:`ConvBlock` and a 3x3/2 max-pool, concatenated.

    Halves the map (H -> (H - 3) // 2 + 1, so H must be at least 3); channels become
    ``filters`` + the input's channels.
    """

    def __init__(
        self,
        filters: int,
        batchnorm: bool = True,
        activation: str = "relu",
        kernel_initializer: Any = "glorot_uniform",
        batchnorm_momentum: float = 0.99,
        **kwargs: Any,
    ):
        super().__init__(batchnorm, activation, kernel_initializer, batchnorm_momentum, **kwargs)
        self.filters = _positive_int("filters", filters)
        self.branch_conv = self._conv(self.filters, 3, 2, "valid", "branch_conv")
        self.branch_pool = keras.layers.MaxPooling2D(pool_size=3, strides=2, padding="valid", name="branch_pool")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        for size in input_shape[1:3]:
            if size is not None and size < 3:
                raise ValueError(f"DownsampleBlock needs a map of at least 3x3, but got input_shape={tuple(input_shape)}.")
        self.branch_conv.build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        a = self.branch_conv(inputs, training=training)
        b = self.branch_pool(inputs)
        return keras.ops.concatenate([a, b], axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        batch, h, w, c = input_shape
        h = None if h is None else downsampled_size(h)
        w = None if w is None else downsampled_size(w)
        return (batch, h, w, None if c is None else c + self.filters)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters}


def build_inception(params: Params, input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """The network of one trial (a functional ``keras.Model`` of the blocks above).

    ``params.arch`` holds ``stem_filters``, ``blocks`` (per stage, a tuple of
    ``(filters_1x1, filters_3x3)`` pairs), ``down_filters`` (per stage), ``activation``,
    ``initializer``, ``batchnorm``, ``batchnorm_momentum`` and ``dropout``.
    """
    a = params.arch
    if len(input_shape) != 3:
        raise ValueError(f"the inception family needs (height, width, channels) images, but got {input_shape=}.")
    if len(a["blocks"]) != len(a["down_filters"]):
        raise ValueError(
            f"blocks and down_filters must have one entry per stage, but got {a['blocks']=} and {a['down_filters']=}."
        )
    size = min(input_shape[:2])
    for _ in a["down_filters"]:
        size = downsampled_size(size)
    if size < 1:
        raise ValueError(
            f"{len(a['down_filters'])} downsampling stages shrink {input_shape[0]}x{input_shape[1]} images below 1x1."
        )
    common = {
        "batchnorm": a["batchnorm"],
        "batchnorm_momentum": a["batchnorm_momentum"],
        "activation": a["activation"],
        "kernel_initializer": a["initializer"],
    }
    inputs = keras.Input(shape=input_shape, name="image")
    x = ConvBlock(a["stem_filters"], 3, strides=1, padding="same", name="stem", **common)(inputs)
    for i, (blocks, down) in enumerate(zip(a["blocks"], a["down_filters"], strict=True)):
        for j, (f1, f3) in enumerate(blocks):
            x = InceptionBlock(f1, f3, name=f"inception_s{i}_b{j}", **common)(x)
        x = DownsampleBlock(down, name=f"downsample_s{i}", **common)(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if a["dropout"] > 0:
        x = keras.layers.Dropout(a["dropout"], name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="inception")


def count_inception_params(params: Params, input_shape: tuple[int, ...], n_classes: int) -> int:
    """What :func:`build_inception` would give ``model.count_params()``, without building it.

    A :class:`ConvBlock` of ``f`` filters, kernel ``k`` on ``c`` channels holds ``k * k * c * f``
    weights and ``f`` biases, plus ``4 * f`` with batch-norm (gamma, beta, moving mean and
    variance).  Pooling and dropout hold none; the head ``c * n_classes + n_classes``.
    """
    a = params.arch
    per_filter = 1 + (4 if a["batchnorm"] else 0)

    def conv(kernel: int, channels: int, filters: int) -> int:
        return kernel * kernel * channels * filters + per_filter * filters

    channels = int(input_shape[-1])
    total = conv(3, channels, a["stem_filters"])
    channels = a["stem_filters"]
    for blocks, down in zip(a["blocks"], a["down_filters"], strict=True):
        for f1, f3 in blocks:
            total += conv(1, channels, f1) + conv(3, channels, f3)
            channels = f1 + f3
        total += conv(3, channels, down)
        channels += down
    return total + channels * n_classes + n_classes
