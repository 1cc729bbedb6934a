"""Edge cases that must just work, and misuse that must fail clearly."""

import warnings

import keras
import numpy as np
import pytest
from keras import layers

import keras_gc


def dense_model():
    return keras.Sequential(
        [keras.Input((4,)), layers.Dense(3, name="a"), layers.Dense(2, name="b")]
    )


def xy():
    rng = np.random.default_rng(0)
    return rng.random((16, 4), "float32"), rng.random((16, 2), "float32")


def test_frozen_layer_has_no_gradient_and_is_left_alone():
    model = dense_model()
    model.get_layer("a").trainable = False
    optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1, momentum=0.9))
    model.compile(optimizer=optimizer, loss="mse")
    frozen = model.get_layer("a").kernel.numpy().copy()
    model.fit(*xy(), verbose=0)
    np.testing.assert_array_equal(model.get_layer("a").kernel.numpy(), frozen)
    assert [e.path.split("/", 1)[1] for e in optimizer.plan] == ["b/kernel", "b/bias"]


def test_none_gradients_from_an_unused_branch():
    model = dense_model()
    optimizer = keras_gc.wrap(keras.optimizers.Adam(0.1))
    grads = [None, None, keras.ops.ones((3, 2)), keras.ops.ones((2,))]
    optimizer.apply(grads, model.trainable_variables)
    kernel = model.get_layer("b").kernel.numpy()
    assert np.all(np.isfinite(kernel))
    assert int(optimizer.iterations) == 1


def fitted_then_frozen():
    """A model fitted once, then recompiled with its first layer frozen and the
    same (already built) optimizer."""
    model = dense_model()
    optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1))
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(*xy(), verbose=0)
    model.get_layer("a").trainable = False
    model.compile(optimizer=optimizer, loss="mse")
    return model


@pytest.mark.tensorflow
@pytest.mark.torch
def test_trainable_flags_changed_between_fits():
    # Keras' TensorFlow and torch trainers apply to the current trainable
    # variables, a subset of those the optimizer was built with.
    model = fitted_then_frozen()
    frozen = model.get_layer("a").kernel.numpy().copy()
    before = model.get_layer("b").kernel.numpy().copy()
    model.fit(*xy(), verbose=0)
    np.testing.assert_array_equal(model.get_layer("a").kernel.numpy(), frozen)
    step = model.get_layer("b").kernel.numpy() - before
    np.testing.assert_allclose(step.mean(axis=0), 0.0, atol=1e-7)


@pytest.mark.jax
def test_trainable_flags_changed_between_fits_is_a_clear_error_on_jax():
    model = fitted_then_frozen()
    with pytest.raises(ValueError, match="Compile the model again with a new"):
        model.fit(*xy(), verbose=0)


@pytest.mark.tensorflow
@pytest.mark.torch
def test_wrapper_reused_for_another_model_is_a_clear_error():
    optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1))
    first, second = dense_model(), dense_model()
    first.compile(optimizer=optimizer, loss="mse")
    first.fit(*xy(), verbose=0)
    second.compile(optimizer=optimizer, loss="mse")
    with pytest.raises(ValueError, match="use a new optimizer"):
        second.fit(*xy(), verbose=0)


def test_lazily_built_model_is_planned_at_first_fit():
    model = keras.Sequential([layers.Dense(3), layers.Dense(2)])
    optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1))
    model.compile(optimizer=optimizer, loss="mse")
    assert not model.built
    model.fit(*xy(), verbose=0)
    assert [e.centralized for e in optimizer.plan] == [True, False, True, False]


def test_size_zero_dimension_is_left_alone():
    variable = keras.Variable(np.zeros((0, 3), "float32"), name="empty")
    (entry,) = keras_gc.plan([variable])
    assert not entry.centralized
    assert entry.reason.startswith("empty")


def test_sparse_embedding_gradients():
    model = keras.Sequential(
        [
            keras.Input((5,), dtype="int32"),
            layers.Embedding(20, 4, name="embedding"),
            layers.GlobalAveragePooling1D(),
            layers.Dense(1, name="head"),
        ]
    )
    x = np.random.default_rng(0).integers(0, 20, (16, 5))
    y = np.zeros((16, 1), "float32")
    optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1))
    model.compile(optimizer=optimizer, loss="mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, verbose=0)
    assert not optimizer.plan[0].centralized

    # Forced, the table's rows keep their means over the embedding axis, on
    # TensorFlow too, where its gradient is sparse (densified).
    table = model.layers[0].embeddings
    before = table.numpy().mean(axis=1)
    forced = keras_gc.wrap(keras.optimizers.SGD(0.1), output_axes={"embeddings": 0})
    model.compile(optimizer=forced, loss="mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y + 1.0, verbose=0)
    assert np.abs(table.numpy().mean(axis=1) - before).max() < 1e-6


class _Lookup(layers.Layer):
    """A custom layer whose kernel's gradient is sparse on TensorFlow."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(20, 3), name="kernel")

    def call(self, ids):
        return keras.ops.sum(keras.ops.take(self.kernel, ids, axis=0), axis=1)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_sparse_kernel_gradient_is_centralized(jit_compile):
    model = keras.Sequential([keras.Input((5,), dtype="int32"), _Lookup(name="lookup")])
    x = np.random.default_rng(0).integers(0, 20, (32, 5))
    y = np.random.default_rng(1).normal(size=(32, 3)).astype("float32")
    kernel = model.layers[0].kernel
    before = keras.ops.convert_to_numpy(kernel).mean(axis=0)
    model.compile(
        optimizer=keras_gc.wrap(keras.optimizers.SGD(0.1)),
        loss="mse",
        jit_compile=jit_compile,
    )
    with warnings.catch_warnings():
        # The warning that a sparse gradient was left alone.
        warnings.filterwarnings("error", message=".*sparse")
        model.fit(x, y, batch_size=8, verbose=0)
    after = keras.ops.convert_to_numpy(kernel).mean(axis=0)
    assert np.abs(after - before).max() < 1e-6


@pytest.mark.tensorflow
def test_sparse_gradient_by_index_is_densified_and_centralized():
    import tensorflow as tf

    first = keras.Variable(np.ones((3, 2), "float32"), name="first")
    second = keras.Variable(np.ones((4, 2), "float32"), name="second")
    plan = keras_gc.plan([first, second])
    sparse = tf.IndexedSlices(
        tf.constant([[1.0, 4.0]]), tf.constant([2]), tf.constant([4, 2])
    )
    dense = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]], "float32")
    sparse_out, dense_out = plan.centralize([sparse, dense], indices=[1, 0])
    expected = np.zeros((4, 2), "float32")
    expected[2] = [1.0, 4.0]
    np.testing.assert_allclose(sparse_out, expected - expected.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(dense_out, dense - dense.mean(axis=0), atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_gradients(dtype):
    model = dense_model()
    optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1))
    optimizer.build(model.trainable_variables)
    grads = [keras.ops.cast(keras.ops.full(v.shape, 3e4), dtype) for v in model.weights]
    result = optimizer.plan.centralize(grads)
    kernel = keras.ops.convert_to_numpy(keras.ops.cast(result[0], "float32"))
    np.testing.assert_allclose(kernel, 0.0)
    assert keras.backend.standardize_dtype(result[0].dtype) == dtype


def nan_step_setup():
    model = dense_model()
    scaler = keras.optimizers.LossScaleOptimizer(
        keras_gc.wrap(keras.optimizers.SGD(0.1))
    )
    grads = [keras.ops.ones(v.shape) for v in model.trainable_variables]
    grads[0] = keras.ops.full((4, 3), np.nan)
    return model, scaler, grads


@pytest.mark.tensorflow
@pytest.mark.torch
def test_non_finite_gradients_reach_the_loss_scaler():
    # Keras' LossScaleOptimizer.apply cannot run eagerly on JAX (its ops.cond
    # leaks tracers); JAX goes through stateless_apply, tested below.
    model, scaler, grads = nan_step_setup()
    before = [v.numpy().copy() for v in model.trainable_variables]
    scaler.apply(grads, model.trainable_variables)
    for variable, value in zip(model.trainable_variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert float(scaler.dynamic_scale) == 2.0**14


@pytest.mark.jax
def test_non_finite_gradients_reach_the_loss_scaler_stateless():
    model, scaler, grads = nan_step_setup()
    scaler.build(model.trainable_variables)
    values = [v.value for v in model.trainable_variables]
    new_values, new_optimizer_values = scaler.stateless_apply(
        [v.value for v in scaler.variables], grads, values
    )
    for new, old in zip(new_values, values, strict=True):
        np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
    (position,) = [
        i for i, v in enumerate(scaler.variables) if v is scaler.dynamic_scale
    ]
    assert float(new_optimizer_values[position]) == 2.0**14


def test_empty_include_is_an_error_and_empty_exclude_excludes_nothing():
    # `include=[]` used to mean "no filter", centralizing every kernel.
    with pytest.raises(ValueError, match="`include` is empty"):
        keras_gc.plan(dense_model(), include=[])
    with pytest.raises(ValueError, match="`include` is empty"):
        keras_gc.wrap(keras.optimizers.SGD(), include=())
    model = dense_model()
    assert list(keras_gc.plan(model, exclude=[])) == list(keras_gc.plan(model))


@pytest.mark.parametrize("name", ["include", "exclude"])
def test_bytes_pattern_is_named_in_the_error(name):
    with pytest.raises(TypeError, match=r"received the bytes b'dense'"):
        keras_gc.wrap(keras.optimizers.SGD(), **{name: b"dense"})


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (layers.ConvLSTM1D(3, 2, name="cl"), (2, 5, 2)),
        (layers.ConvLSTM2D(3, 2, name="cl"), (2, 5, 5, 2)),
        (layers.ConvLSTM3D(3, 2, name="cl"), (2, 4, 4, 4, 2)),
    ],
    ids=["1d", "2d", "3d"],
)
def test_conv_only_centralizes_conv_lstm_kernels(layer, shape):
    model = keras.Sequential([keras.Input(shape), layer])
    plan = {e.path.rsplit("/", 1)[1]: e for e in keras_gc.plan(model, conv_only=True)}
    assert plan["kernel"].centralized
    assert plan["recurrent_kernel"].centralized
    assert not plan["bias"].centralized
    # The 4 * filters gates are the output axis, as for any Keras conv kernel.
    rank = len(plan["kernel"].shape)
    assert plan["kernel"].output_axes == plan["recurrent_kernel"].output_axes
    assert plan["kernel"].output_axes == (rank - 1,)


@pytest.mark.torch
def test_torch_compiled_fit_has_no_dynamo_warning_from_keras_gc(caplog, capfd):
    import logging

    model = keras.Sequential(
        [keras.Input((4,)), layers.Dense(3), layers.Dense(3), layers.Dense(2)]
    )
    model.compile(
        optimizer=keras_gc.wrap(keras.optimizers.SGD(0.1)),
        loss="mse",
        jit_compile=True,
    )
    with (
        warnings.catch_warnings(record=True) as caught,
        caplog.at_level(logging.WARNING),
    ):
        warnings.simplefilter("always")
        model.fit(*xy(), batch_size=4, epochs=2, verbose=0)
    messages = [str(w.message) for w in caught] + [caplog.text, *capfd.readouterr()]
    assert not [m for m in messages if "incorrectness" in m.lower()], messages
