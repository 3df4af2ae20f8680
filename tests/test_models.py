"""Dense builder: shapes, parameter counts, and every sampled value used."""

from __future__ import annotations

import keras
import pytest

from hpo.config import ACTIVATIONS, INITIALIZERS, OPTIMIZERS
from hpo.models import build, compile_model, make_optimizer
from hpo.space import Params


def dense(units=(128,), activation="relu", initializer="glorot_uniform", dropout=0.0, batchnorm=False, **kw) -> Params:
    arch = {
        "units": tuple(units),
        "activation": activation,
        "initializer": initializer,
        "dropout": dropout,
        "batchnorm": batchnorm,
    }
    return Params(
        family="dense", arch=arch, learning_rate=kw.get("lr", 1e-3), optimizer=kw.get("optimizer", "adam"), batch_size=32
    )


def test_tutorial_network_has_101770_parameters() -> None:
    model = build(dense(), (28, 28, 1), 10)
    assert model.count_params() == 101_770
    assert model.output_shape == (None, 10)


def test_layer_order_with_batchnorm_and_dropout() -> None:
    model = build(dense(units=(64, 32), activation="tanh", initializer="he_normal", dropout=0.3, batchnorm=True), (28, 28, 1), 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Flatten"] + ["Dense", "BatchNormalization", "Activation", "Dropout"] * 2 + ["Dense"]
    dense0 = model.get_layer("dense_0")
    assert dense0.get_config()["kernel_initializer"]["class_name"] == "HeNormal"
    assert dense0.use_bias is False
    assert model.get_layer("activation_1").get_config()["activation"] == "tanh"
    assert model.get_layer("dropout_0").rate == 0.3
    # 784*64 + BN(4*64) + 64*32 + BN(4*32) + 32*10+10
    assert model.count_params() == 784 * 64 + 4 * 64 + 64 * 32 + 4 * 32 + 32 * 10 + 10


def test_activation_is_used() -> None:
    model = build(dense(activation="selu"), (8, 8, 1), 10)
    assert model.get_layer("dense_0").get_config()["activation"] == "selu"


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_resolves(name: str) -> None:
    assert callable(keras.activations.get(name))


@pytest.mark.parametrize("name", INITIALIZERS)
def test_every_initializer_resolves(name: str) -> None:
    assert isinstance(keras.initializers.get(name), keras.initializers.Initializer)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_resolves_with_its_learning_rate(name: str) -> None:
    opt = make_optimizer(name, 0.0123)
    assert opt.__class__.__name__.lower() == name
    assert float(opt.learning_rate) == pytest.approx(0.0123)


def test_compile_uses_the_sampled_optimizer() -> None:
    model = compile_model(build(dense(optimizer="rmsprop", lr=0.02), (28, 28, 1), 10), dense(optimizer="rmsprop", lr=0.02))
    assert type(model.optimizer).__name__ == "RMSprop"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.02)


def test_xla_only_without_dropout() -> None:
    """XLA's CPU random numbers make Dropout several times slower: such models run without it."""
    with_dropout = dense(dropout=0.3)
    assert compile_model(build(with_dropout, (28, 28, 1), 10), with_dropout).jit_compile is False
    assert compile_model(build(dense(), (28, 28, 1), 10), dense()).jit_compile is True


def test_parameter_count_without_building_equals_keras_count() -> None:
    """``count_params`` (no weight allocated) == ``model.count_params()`` on sampled points of both families."""
    import optuna

    from hpo import space
    from hpo.api import load_config
    from hpo.config import parse_config
    from hpo.models import count_params
    from tests.conftest import STUDIES

    tutorial = space.sample(optuna.trial.FixedTrial({}), load_config(STUDIES / "inception_tutorial.toml"))
    assert count_params(tutorial, (28, 28, 1), 10) == 586_730
    assert count_params(dense(), (28, 28, 1), 10) == 101_770
    raw = {
        "model": {"family": ["dense", "inception"]},
        "space": {
            "dense": {"layers": {"low": 1, "high": 3}, "units": {"low": 1, "high": 300}, "batchnorm": [False, True]},
            "inception": {
                "stem_filters": {"low": 1, "high": 24},
                "stages": {"low": 1, "high": 3},
                "blocks": {"low": 0, "high": 2},
                "filters_1x1": {"low": 1, "high": 24},
                "filters_3x3": {"low": 1, "high": 24},
                "down_filters": {"low": 1, "high": 24},
                "batchnorm": [False, True],
                "dropout": [0.0, 0.2],
            },
        },
    }
    cfg = parse_config(raw)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for i in range(16):
        params = space.sample(study.ask(), cfg)
        shape, classes = ((28, 28, 1), 10) if i % 2 else ((30, 20, 3), 7)
        keras.backend.clear_session()
        model = build(params, shape, classes)
        assert count_params(params, shape, classes) == model.count_params(), params
        seen.add((params.family, params.arch["batchnorm"]))
    assert seen == {(f, bn) for f in ("dense", "inception") for bn in (False, True)}


def test_xla_for_dense_nets_only_where_an_epoch_is_long_enough_to_pay_for_it() -> None:
    """Measured on 54,000 images: 128 units at batch 64 (86 M parameter-steps per epoch) and
    380/257 at batch 256 (84 M) lose time with XLA; 178/557 at batch 64 (207 M) gains from epoch 2."""
    from hpo.models import XLA_MIN_PARAM_STEPS, use_xla

    small, bn2, wide = dense(units=(128,)), dense(units=(178, 557), batchnorm=True), dense(units=(1024, 1024, 1024))
    steps_b64, steps_b32 = -(-54_000 // 64), -(-54_000 // 32)
    assert not use_xla(build(small, (28, 28, 1), 10), small, steps_b64)
    assert use_xla(build(bn2, (28, 28, 1), 10), bn2, steps_b64)
    assert use_xla(build(wide, (28, 28, 1), 10), wide, steps_b32)
    model = build(small, (28, 28, 1), 10)
    at_threshold = -(-XLA_MIN_PARAM_STEPS // model.count_params())
    assert use_xla(model, small, at_threshold) and not use_xla(model, small, at_threshold - 1)
    assert compile_model(model, small, steps_per_epoch=steps_b64).jit_compile is False
    with_dropout = dense(units=(1024, 1024, 1024), dropout=0.1)
    assert not use_xla(build(with_dropout, (28, 28, 1), 10), with_dropout, steps_b32)  # never with dropout
