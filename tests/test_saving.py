"""Saving, loading and resuming a model trained with the wrapper."""

import functools
from pathlib import Path

import keras
import numpy as np
import pytest
from _keras_features import readable_by_this_keras
from _models import conv_and_dense, conv_and_dense_data

import keras_gc


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


@keras.saving.register_keras_serializable(package="keras_gc_tests")
def head_axes(variable):
    return 0 if variable.path.endswith("head/kernel") else None


def function_options():
    """Options given as Python functions: a lambda and a registered function."""
    return {
        "include": ["conv", lambda v: "head" in v.path],
        "output_axes": head_axes,
    }


def test_functions_in_options_survive_a_config_round_trip():
    wrapped = keras_gc.wrap(keras.optimizers.SGD(), **function_options())
    serialized = keras.saving.serialize_keras_object(wrapped)
    with pytest.raises(ValueError, match="safe_mode=False"):
        keras.saving.deserialize_keras_object(serialized)
    restored = keras.saving.deserialize_keras_object(serialized, safe_mode=False)
    assert restored.options.output_axes is head_axes
    model = conv_and_dense()
    for optimizer in (wrapped, restored):
        optimizer.build(model.trainable_variables)
    assert restored.plan[2].output_axes == (0,)  # head/kernel, by the function
    assert [(e.output_axes, e.axes) for e in restored.plan] == [
        (e.output_axes, e.axes) for e in wrapped.plan
    ]


def in_names(names):
    return lambda v: v.path in names


@pytest.mark.parametrize(
    "value",
    [functools.partial(str.startswith, "x"), [in_names({"a", "b"})]],
    ids=["partial", "set-in-closure"],
)
def test_unsavable_function_is_refused_before_anything_is_written(value):
    with pytest.raises(TypeError, match="cannot be saved with the model"):
        keras_gc.wrap(keras.optimizers.SGD(), include=value)
    optimizer = keras_gc.wrap(keras.optimizers.SGD())
    with pytest.raises(TypeError, match="cannot be saved with the model"):
        optimizer.options = keras_gc.Options(include=value)


def test_a_plan_takes_functions_that_cannot_be_saved():
    # Nothing saves a plan: only the optimizer refuses them.
    plan = keras_gc.plan(conv_and_dense(), include=in_names({"x"}))
    assert not any(e.centralized for e in plan)


class LoadEachEpoch(keras.callbacks.Callback):
    """Loads the checkpoint at `path` after each epoch, and keeps a copy."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.loaded = []

    def on_epoch_end(self, epoch, logs=None):
        copy = self.path.with_name(f"epoch{epoch}.keras")
        copy.write_bytes(self.path.read_bytes())
        model = keras.saving.load_model(self.path, safe_mode=False)
        self.loaded.append(int(model.optimizer.iterations))


def test_checkpoint_each_epoch_to_one_path_always_loads_and_resumes(tmp_path):
    x, y = conv_and_dense_data()
    path = tmp_path / "checkpoint.keras"
    model = compiled(
        conv_and_dense(),
        keras_gc.wrap(keras.optimizers.Adam(0.01), **function_options()),
    )
    checks = LoadEachEpoch(path)
    save = keras.callbacks.ModelCheckpoint(path)
    model.fit(
        x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[save, checks]
    )
    assert checks.loaded == [4, 8]

    # The first epoch's checkpoint, trained one more epoch, ends where the
    # uninterrupted run did.
    resumed = keras.saving.load_model(tmp_path / "epoch0.keras", safe_mode=False)
    resumed.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    decisions = [
        [(e.axes, e.reason) for e in m.optimizer.plan] for m in (resumed, model)
    ]
    assert decisions[0] == decisions[1]
    assert int(resumed.optimizer.iterations) == 8
    for a, b in zip(model.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


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
        conv_and_dense(), keras_gc.wrap(keras.optimizers.Adam(0.01), **OPTIONS)
    )
    x, y = conv_and_dense_data()
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
    x, y = conv_and_dense_data()
    first = conv_and_dense()
    second = conv_and_dense()
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
