"""The Inception family: blocks, the space, the tutorial point, saving, and a mixed-family CLI study."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pytest  # noqa: E402

from hpo import models, space  # noqa: E402
from hpo.api import load_config  # noqa: E402
from hpo.config import parse_config  # noqa: E402
from hpo.data import prepare  # noqa: E402
from hpo.errors import ConfigError  # noqa: E402
from hpo.models.inception import ConvBlock, DownsampleBlock, InceptionBlock, build_inception  # noqa: E402
from tests.conftest import STUDIES, run_cli  # noqa: E402

TUTORIAL_PARAMS = 586_730

# The smallest useful network: trains in well under a second per epoch on a few hundred images.
TINY_SPACE = {
    "stem_filters": 8,
    "stages": 1,
    "blocks": 1,
    "filters_1x1": 8,
    "filters_3x3": 8,
    "down_filters": 8,
    "batch_size": 64,
}


def _params(cfg, fixed=None):
    return space.sample(optuna.trial.FixedTrial(fixed or {}), cfg)


def _raw(**inception):
    return {"model": {"family": "inception"}, "space": {"inception": {**TINY_SPACE, **inception}}}


def _images(n=4, size=28, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 1), dtype=np.float32)


# ------------------------------------------------------------------------------------------
# Blocks


@pytest.mark.parametrize(
    ("block", "size", "expected"),
    [
        (ConvBlock(12, 3), 28, (4, 28, 28, 12)),
        (ConvBlock(12, 3, strides=2, padding="valid"), 28, (4, 13, 13, 12)),
        (ConvBlock(5, 1, batchnorm=False), 8, (4, 8, 8, 5)),
        (InceptionBlock(7, 9), 28, (4, 28, 28, 16)),
        (InceptionBlock(4, 4, batchnorm=False, activation="gelu"), 6, (4, 6, 6, 8)),
        (DownsampleBlock(10), 28, (4, 13, 13, 13)),  # 10 conv filters + 3 pooled input channels
        (DownsampleBlock(10), 13, (4, 6, 6, 13)),
        (DownsampleBlock(2), 3, (4, 1, 1, 5)),
    ],
)
def test_block_output_shapes(block, size, expected):
    x = np.random.default_rng(0).random((4, size, size, 3), dtype=np.float32)
    y = block(x)
    assert tuple(y.shape) == expected
    assert tuple(block.compute_output_shape((4, size, size, 3))) == expected


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ConvBlock(0), "filters must be a positive integer"),
        (lambda: ConvBlock(4, kernel_size=(3, 3, 3)), "kernel_size"),
        (lambda: ConvBlock(4, padding="causal"), "padding must be"),
        (lambda: ConvBlock(4, activation="relux"), "relux"),
        (lambda: ConvBlock(4, batchnorm="yes"), "batchnorm must be True or False"),
        (lambda: ConvBlock(4, batchnorm_momentum=1.0), "batchnorm_momentum must be in (0, 1)"),
        (lambda: InceptionBlock(4, 0), "filters_3x3 must be a positive integer"),
        (lambda: InceptionBlock(2.5, 4), "filters_1x1 must be a positive integer"),
        (lambda: DownsampleBlock(-1), "filters must be a positive integer"),
    ],
)
def test_blocks_validate_in_init(make, message):
    with pytest.raises(ValueError) as e:
        make()
    assert message in str(e.value)


def test_downsample_refuses_a_map_smaller_than_3x3():
    with pytest.raises(ValueError, match="at least 3x3"):
        DownsampleBlock(4)(np.zeros((1, 2, 2, 1), dtype=np.float32))


@pytest.mark.parametrize(
    "block",
    [
        ConvBlock(6, (1, 3), strides=(1, 2), padding="valid", batchnorm=False, activation="elu", kernel_initializer="he_normal"),
        InceptionBlock(3, 5, activation="swish", kernel_initializer="lecun_normal", batchnorm_momentum=0.8, name="inc"),
        DownsampleBlock(7, batchnorm=False, kernel_initializer="orthogonal"),
    ],
)
def test_get_config_from_config_round_trip(block):
    x = _images(2, 9)
    block(x)
    config = block.get_config()
    clone = type(block).from_config(config)
    assert clone.get_config() == config
    # Through Keras' registry, as a .keras file stores it.
    serialized = keras.saving.serialize_keras_object(block)
    assert serialized["registered_name"] == f"hpo>{type(block).__name__}"
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(block) and revived.get_config() == config
    clone(x)
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in block.weights]
    clone.set_weights(block.get_weights())
    np.testing.assert_array_equal(np.asarray(clone(x)), np.asarray(block(x)))


# ------------------------------------------------------------------------------------------
# The tutorial point and the space


def test_tutorial_study_is_one_exact_point_with_586730_parameters():
    cfg = load_config(STUDIES / "inception_tutorial.toml")
    assert space.distributions(cfg) == {}  # nothing searched
    params = _params(cfg)
    assert params.arch["stem_filters"] == 96
    assert params.arch["blocks"] == (((32, 32), (32, 48)), ((112, 48), (96, 64), (80, 80)))
    assert params.arch["down_filters"] == (80, 96)
    assert (params.optimizer, params.learning_rate) == ("adam", 5e-5)
    model = models.build(params, (28, 28, 1), 10)
    assert model.count_params() == TUTORIAL_PARAMS


def test_indexed_keys_override_plain_keys_most_specific_first():
    raw = _raw(
        stages=2,
        blocks=1,
        blocks_s1=3,
        filters_3x3=16,
        filters_3x3_s1=64,
        filters_3x3_s1_b2=32,
        down_filters_s0=24,
    )
    arch = _params(parse_config(raw)).arch
    assert arch["blocks"] == (((8, 16),), ((8, 64), (8, 64), (8, 32)))
    assert arch["down_filters"] == (24, 8)


def test_every_suggested_name_is_a_declared_distribution():
    raw = _raw(
        stem_filters=[8, 16],
        stages={"low": 1, "high": 3},
        blocks={"low": 0, "high": 2},
        blocks_s2=[1, 3],
        filters_1x1=[4, 8],
        filters_3x3_s1={"low": 4, "high": 12, "step": 4},
        down_filters_s0=[8, 16],
        activation=["relu", "gelu"],
        dropout={"low": 0.0, "high": 0.5},
    )
    raw["model"]["family"] = ["dense", "inception"]
    cfg = parse_config(raw)
    declared = space.distributions(cfg)
    assert "inception_filters_1x1_s2_b2" in declared and "inception_filters_1x1_s2_b3" not in declared
    assert "inception_filters_3x3_s0_b0" not in declared  # fixed by a scalar: nothing to search
    assert declared["inception_filters_3x3_s1_b0"] == optuna.distributions.IntDistribution(4, 12, step=4)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        params = space.sample(trial, cfg)
        for name, dist in trial.distributions.items():
            assert declared[name] == dist, name
        seen.add(params.family)
        study.tell(trial, 1.0)
    assert seen == {"dense", "inception"}


@pytest.mark.parametrize(
    ("override", "key", "message"),
    [
        ({"stages": 4}, "space.inception.stages", "28 -> 13 -> 6 -> 2 -> 0); at most 3 fit"),
        ({"stages": {"low": 1, "high": 3}, "dataset": "digits"}, "space.inception.stages", "8x8 images below 1x1"),
        ({"blocks_s1": 2}, "space.inception.blocks_s1", "stage 1 (counted from 0)"),
        ({"filters_1x1_s0_b1": 8}, "space.inception.filters_1x1_s0_b1", "space.inception.blocks allows at most 1"),
        ({"filters_1x1_b0": 8}, "space.inception.filters_1x1_b0", "unknown key"),
        ({"stem_filters_s0": 8}, "space.inception.stem_filters_s0", "unknown key"),
        ({"down_filters_s0_b0": 8}, "space.inception.down_filters_s0_b0", "unknown key"),
        ({"filters_3x3_s0": 0}, "space.inception.filters_3x3_s0", "must be in [1, 1099511627776], but got 0"),
        ({"batchnorm_momentum": 1}, "space.inception.batchnorm_momentum", "must be in (0, 1), but got 1"),
    ],
)
def test_bad_inception_spaces_are_refused_in_one_line(override, key, message):
    override = dict(override)
    raw = _raw(**{k: v for k, v in override.items() if k != "dataset"})
    if "dataset" in override:
        raw["data"] = {"dataset": override["dataset"]}
    with pytest.raises(ConfigError) as e:
        parse_config(raw, source="s.toml")
    text = str(e.value)
    assert text.startswith(f"s.toml: {key}: ") and message in text and "\n" not in text


def test_image_size_is_only_checked_when_the_family_is_used():
    raw = _raw(stages=3)
    raw["model"]["family"] = "dense"
    raw["data"] = {"dataset": "digits"}
    assert parse_config(raw).model.family == ("dense",)
    raw["model"]["family"] = ["dense", "inception"]
    with pytest.raises(ConfigError, match="space.inception.stages"):
        parse_config(raw)


def test_builder_refuses_images_too_small_for_its_stages():
    params = _params(parse_config(_raw(stages=3)))
    with pytest.raises(ValueError, match="below 1x1"):
        build_inception(params, (8, 8, 1), 10)
    assert build_inception(params, (28, 28, 1), 10).output_shape == (None, 10)


# ------------------------------------------------------------------------------------------
# Saving


def test_saved_model_loads_back_with_identical_predictions(tmp_path):
    cfg = parse_config({**_raw(stages=2, blocks_s1=2, dropout=0.2), "data": {"train_size": 256}})
    split = prepare(cfg.data)
    params = _params(cfg)
    keras.utils.set_random_seed(0)
    model = models.compile_model(models.build(params, split.image_shape, split.n_classes), params, jit_compile=False)
    model.fit(split.x_train, split.y_train, batch_size=64, epochs=1, verbose=0)  # moves the BN statistics
    path = models.save_model(model, tmp_path / "best.keras")
    loaded = models.load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]
    x = split.x_val[:64]
    expected = np.asarray(model(x, training=False))
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), expected)
    assert np.ptp(expected, axis=0).max() > 1e-4  # predictions depend on the image
    moving_mean = loaded.get_layer("stem").norm.moving_mean
    assert np.abs(np.asarray(moving_mean)).max() > 0  # the trained statistics came back, not fresh ones
    for a, b in zip(loaded.weights, model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match=r"must end in \.keras"):
        models.save_model(model, tmp_path / "best.h5")


# ------------------------------------------------------------------------------------------
# The CLI


def test_bad_inception_space_exits_2_before_any_storage_write(tmp_path):
    db = tmp_path / "never.db"
    result = run_cli(
        "study",
        str(STUDIES / "fashion_inception.toml"),
        "--storage",
        f"sqlite:///{db}",
        "--set",
        "data.dataset=digits",
        "--set",
        "space.inception.stages=3",
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "space.inception.stages" in lines[0] and "8x8" in lines[0]
    assert not db.exists()


def test_one_epoch_mixed_family_study_through_the_cli(sqlite_url):
    tiny = [f"space.inception.{k}={v}" for k, v in TINY_SPACE.items()]
    args = ["--set", "data.train_size=256", "--set", "data.validation_fraction=0.01", "--set", "objective.max_epochs=1"]
    for item in tiny:
        args += ["--set", item]
    result = run_cli(
        "study",
        str(STUDIES / "fashion_inception.toml"),
        "--storage",
        sqlite_url,
        "--study-name",
        "mixed",
        "--n-trials",
        "3",
        "--set",
        'model.family=["dense", "inception"]',
        "--set",
        "study.sampler=random",
        "--set",
        "space.dense.units=[32, 64]",
        "--set",
        "space.dense.batch_size=64",
        "--no-progress",
        *args,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="mixed", storage=sqlite_url)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 3 and all(t.state.is_finished() for t in trials)
    by_family = {t.user_attrs["family"]: t for t in trials}
    assert set(by_family) == {"dense", "inception"}
    inc = by_family["inception"]
    assert inc.params["family"] == "inception"
    assert not any(name.startswith("dense_") for name in inc.params)
    assert inc.user_attrs["epochs"] == 1 and inc.user_attrs["stop_reason"] in ("target", "max_epochs")
    assert set(inc.system_attrs["history"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    # The stored parameters rebuild the very network the trial trained.
    cfg = load_config(
        STUDIES / "fashion_inception.toml", [a for a in args if a != "--set"] + ['model.family=["dense", "inception"]']
    )
    params = space.params_from_trial(cfg, inc)
    assert params.family == "inception" and params.arch["stem_filters"] == 8
    assert models.build(params, (28, 28, 1), 10).count_params() == inc.user_attrs["n_params"]
