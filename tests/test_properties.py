"""Properties of GC, checked on random inputs with hypothesis."""

import keras
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from keras import layers, ops

import keras_gc

SETTINGS = settings(max_examples=30, deadline=None)
FLOATS = st.floats(-100, 100, width=32)


@st.composite
def gradient_and_axes(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5))
    gradient = draw(hnp.arrays("float32", shape, elements=FLOATS))
    axes = draw(
        st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(
            lambda a: tuple(sorted(a))
        )
    )
    return gradient, axes


def c(gradient, axes):
    return np.asarray(ops.convert_to_numpy(keras_gc.centralize(gradient, axes)))


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-3)


@SETTINGS
@given(gradient_and_axes())
def test_zero_mean_over_the_reduced_axes(case):
    gradient, axes = case
    close(c(gradient, axes).mean(axis=axes), 0.0)


@SETTINGS
@given(gradient_and_axes())
def test_idempotent(case):
    gradient, axes = case
    once = c(gradient, axes)
    close(c(once, axes), once)


@SETTINGS
@given(gradient_and_axes(), st.floats(-3, 3), st.floats(-3, 3))
def test_linear(case, a, b):
    x, axes = case
    y = np.roll(x, 1)
    close(c(a * x + b * y, axes), a * c(x, axes) + b * c(y, axes))


@SETTINGS
@given(gradient_and_axes())
def test_orthogonal_projection(case):
    gradient, axes = case
    projected = c(gradient, axes)
    inner = np.sum(projected.astype("float64") * (gradient - projected))
    scale = np.sum(gradient.astype("float64") ** 2) + 1.0
    assert abs(inner) / scale < 1e-5


@SETTINGS
@given(gradient_and_axes(), st.data())
def test_removes_exactly_a_constant_along_the_reduced_axes(case, data):
    gradient, axes = case
    kept_shape = tuple(1 if i in axes else n for i, n in enumerate(gradient.shape))
    constant = data.draw(hnp.arrays("float32", kept_shape, elements=FLOATS))
    close(c(gradient + constant, axes), c(gradient, axes))


@SETTINGS
@given(gradient_and_axes(), st.floats(1e-3, 1.0))
def test_sgd_step_keeps_the_weight_means_fixed(case, learning_rate):
    gradient, axes = case
    weights = np.linspace(-1, 1, gradient.size, dtype="float32").reshape(gradient.shape)
    stepped = weights - np.float32(learning_rate) * c(gradient, axes)
    close(stepped.mean(axis=axes), weights.mean(axis=axes))


LAYERS = {
    "dense": (lambda n: layers.Dense(n), lambda rank: (rank - 1,)),
    "conv1d": (lambda n: layers.Conv1D(n, 2, padding="same"), lambda rank: (2,)),
    "conv1d_transpose": (
        lambda n: layers.Conv1DTranspose(n, 2, padding="same"),
        lambda rank: (1,),
    ),
    "depthwise_conv1d": (
        lambda n: layers.DepthwiseConv1D(2, padding="same"),
        lambda rank: (1, 2),
    ),
}


@settings(max_examples=8, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(LAYERS)), st.integers(2, 5)),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 2**16),
)
def test_random_layer_stacks_match_the_numpy_reference(stack, seed):
    model = keras.Sequential([keras.Input((6, 3))])
    kept = {}
    for kind, units in stack:
        make, output_axes = LAYERS[kind]
        layer = make(units)
        model.add(layer)
        kept[id(layer.kernel)] = output_axes(len(layer.kernel.shape))
    rng = np.random.default_rng(seed)
    grads = [rng.standard_normal(v.shape).astype("float32") for v in model.weights]
    result = keras_gc.centralize_gradients(
        [ops.convert_to_tensor(g) for g in grads], model.trainable_variables
    )
    for variable, grad, got in zip(
        model.trainable_variables, grads, result, strict=True
    ):
        expected = grad
        if id(variable) in kept:
            reduced = tuple(i for i in range(grad.ndim) if i not in kept[id(variable)])
            if np.prod([grad.shape[i] for i in reduced]) > 1:
                expected = grad - grad.mean(axis=reduced, keepdims=True)
        close(np.asarray(ops.convert_to_numpy(got)), expected)
