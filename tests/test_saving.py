"""Saving, loading and resuming a model trained with the wrapper."""

from pathlib import Path

import keras
import numpy as np
import pytest
from _keras_features import readable_by_this_keras
from keras import layers

import keras_gc


def small_model():
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            layers.Conv2D(4, 3, name="conv"),
            layers.Flatten(),
            layers.Dense(2, name="head"),
        ]
    )


def data():
    rng = np.random.default_rng(0)
    return rng.random((32, 6, 6, 2), "float32"), rng.random((32, 2), "float32")


def compiled(model, optimizer):
    model.compile(optimizer=optimizer, loss="mse")
    return model


OPTIONS = {
    "conv_only": True,
    "include": ["conv", "head"],
    "exclude": "bias",
    "output_axes": {"head/kernel": [1]},
}


def test_config_round_trip():
    wrapped = keras_gc.wrap(keras.optimizers.Adam(3e-4, beta_1=0.8), **OPTIONS)
    config = wrapped.get_config()
    restored = keras_gc.GradientCentralizationOptimizer.from_config(config)
    assert restored.get_config() == config
    assert isinstance(restored.inner_optimizer, keras.optimizers.Adam)
    assert restored.inner_optimizer.beta_1 == pytest.approx(0.8)
    assert restored.options.conv_only is True
    assert restored.options.output_axes == {"head/kernel": (1,)}


def test_keras_serialize_round_trip():
    wrapped = keras_gc.wrap(keras.optimizers.SGD(0.2, momentum=0.5), **OPTIONS)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(wrapped))
    assert isinstance(restored, keras_gc.GradientCentralizationOptimizer)
    assert restored.get_config() == wrapped.get_config()


def test_functions_cannot_be_saved():
    wrapped = keras_gc.wrap(keras.optimizers.SGD(), include=lambda v: True)
    with pytest.raises(ValueError, match="`include` holds a Python function"):
        wrapped.get_config()


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        ({"name": "gc"}, ValueError, "no `inner_optimizer`"),
        (
            {
                "inner_optimizer": keras.optimizers.serialize(keras.optimizers.SGD()),
                "speed": 2,
            },
            TypeError,
            "unexpected arguments `speed`",
        ),
    ],
    ids=["missing-inner", "unknown-key"],
)
def test_bad_config(config, error, message):
    with pytest.raises(error, match=message):
        keras_gc.GradientCentralizationOptimizer.from_config(config)


def test_save_and_load_restores_wrapper_options_and_state(tmp_path):
    model = compiled(
        small_model(), keras_gc.wrap(keras.optimizers.Adam(0.01), **OPTIONS)
    )
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, keras_gc.GradientCentralizationOptimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert int(loaded.optimizer.iterations) == 4
    saved = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    restored = [keras.ops.convert_to_numpy(v) for v in loaded.optimizer.variables]
    assert len(saved) == len(restored)
    for a, b in zip(saved, restored, strict=True):
        np.testing.assert_array_equal(a, b)


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    x, y = data()
    first = small_model()
    second = small_model()
    second.set_weights(first.get_weights())
    compiled(first, keras_gc.optimizers.Adam(0.01))
    compiled(second, keras_gc.optimizers.Adam(0.01))

    first.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)

    second.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    second.save(tmp_path / "halfway.keras")
    resumed = keras.saving.load_model(tmp_path / "halfway.keras")
    resumed.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)

    assert int(resumed.optimizer.iterations) == int(first.optimizer.iterations) == 12
    for a, b in zip(first.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


FIXTURES = Path(__file__).parent / "fixtures"


@readable_by_this_keras(FIXTURES / "gc_v0_1_0.keras")
def test_file_saved_by_version_0_1_0_loads_and_resumes():
    # Saved on JAX by keras-gc 0.1.0 (tests/fixtures/make_gc_v0_1_0.py), with the
    # weights that version reached one step later: later versions must load
    # the same optimizer state and take the same step on every backend.
    model = keras.saving.load_model(FIXTURES / "gc_v0_1_0.keras")
    optimizer = model.optimizer
    assert isinstance(optimizer, keras_gc.GradientCentralizationOptimizer)
    assert isinstance(optimizer.inner_optimizer, keras.optimizers.SGD)
    assert optimizer.options.exclude == ("head",)
    assert optimizer.options.output_axes == {"hidden/kernel": -1}
    assert int(optimizer.iterations) == 3
    expected = np.load(FIXTURES / "gc_v0_1_0_resume.npz")
    model.train_on_batch(expected["x"], expected["y"])
    weights = model.get_weights()
    assert len(weights) == 6
    for i, weight in enumerate(weights):
        np.testing.assert_allclose(weight, expected[f"w{i}"], rtol=1e-5, atol=1e-6)
