"""`keras_gc.centralize` against golden values and a NumPy reference."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_gc


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


@pytest.mark.parametrize(
    ("gradient", "axes", "expected"),
    [
        ([[1.0, 2.0], [3.0, 6.0]], 0, [[-1.0, -2.0], [1.0, 2.0]]),
        ([[1.0, 2.0], [3.0, 6.0]], 1, [[-0.5, 0.5], [-1.5, 1.5]]),
        ([[1.0, 2.0], [3.0, 6.0]], -1, [[-0.5, 0.5], [-1.5, 1.5]]),
        ([[1.0, 2.0], [3.0, 6.0]], (0, 1), [[-2.0, -1.0], [0.0, 3.0]]),
        ([[[1.0], [3.0]], [[5.0], [7.0]]], (0, 1), [[[-3.0], [-1.0]], [[1.0], [3.0]]]),
    ],
    ids=["2d-axis0", "2d-axis1", "2d-negative", "2d-all", "3d-two-axes"],
)
def test_golden_values(gradient, axes, expected):
    result = keras_gc.centralize(ops.convert_to_tensor(gradient), axes)
    np.testing.assert_allclose(_numpy(result), expected, atol=1e-6)


def _reference(g, axes):
    """GC in NumPy: the truth the backends' fast paths are checked against."""
    return g - g.mean(axis=axes, keepdims=True)


def _eager(function):
    return function


def _compiled(function):
    """`function` compiled as `fit` compiles a train step on this backend."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(function)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(function)
    pytest.skip("torch runs op by op unless asked for torch.compile")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("shape", "axes"),
    [
        ((3, 3, 8, 16), (0, 1, 2)),
        ((3, 3, 8, 16), (2, -4, 1)),
        ((2, 3, 3, 4, 5), (0, 1, 2, 3)),
        ((5, 2, 3), (0,)),
        ((3, 3, 4, 2), (0, 1)),
    ],
    ids=["conv2d", "conv2d-unordered-axes", "conv3d", "attention-query", "depthwise"],
)
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_matches_numpy_reference(shape, axes, dtype, compiled):
    # Channels-last kernels and float32 take each backend's fast path (on JAX
    # under jit only); the others (and float64) take `keras.ops.mean`: both
    # must agree with NumPy.
    values = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    gradient = ops.convert_to_tensor(values) + 3.0
    run = _compiled if compiled else _eager
    result = _numpy(run(lambda g: keras_gc.centralize(g, axes))(gradient))
    # In float64 from the values the backend holds (JAX keeps float32 unless
    # x64 is on): an offset of 3 leaves results near zero, so the tolerance
    # is a few float32 steps of 3.
    g = _numpy(gradient).astype("float64")
    np.testing.assert_allclose(result, _reference(g, axes), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(result.mean(axis=axes), 0.0, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_keeps_dtype(dtype):
    g = ops.cast(ops.convert_to_tensor(np.arange(12.0).reshape(3, 4)), dtype)
    result = keras_gc.centralize(g, 0)
    assert keras.backend.standardize_dtype(result.dtype) == dtype


def test_float16_mean_does_not_overflow():
    # 4096 values of 60000 sum to 2.4e8, far past float16's 65504.
    g = ops.cast(ops.full((4096, 2), 60000.0), "float16")
    result = _numpy(ops.cast(keras_gc.centralize(g, 0), "float32"))
    assert np.all(np.isfinite(result))
    np.testing.assert_allclose(result, 0.0)


def test_bfloat16_mean_is_accurate():
    # In bfloat16, 1 + 1/256 rounds to 1: a bfloat16 mean of 256 ones and one
    # 3.0 loses the 3.0's contribution, a float32 mean keeps it.
    values = np.ones((257, 1), "float32")
    values[0] = 3.0
    g = ops.cast(ops.convert_to_tensor(values), "bfloat16")
    result = _numpy(ops.cast(keras_gc.centralize(g, 0), "float32"))
    expected = _reference(values, 0)
    np.testing.assert_allclose(result, expected, atol=1e-2)


def test_non_finite_gradients_stay_non_finite():
    g = np.ones((4, 3), "float32")
    g[1, 2] = np.nan
    g[0, 0] = np.inf
    result = _numpy(keras_gc.centralize(ops.convert_to_tensor(g), 0))
    assert not np.isfinite(result[:, 0]).any()
    assert not np.isfinite(result[:, 2]).any()
    np.testing.assert_allclose(result[:, 1], 0.0)


def _tf_graph_ops(axes):
    import tensorflow as tf

    spec = tf.TensorSpec((3, 3, 8, 16), "float32")
    traced = tf.function(lambda g: keras_gc.centralize(g, axes))
    return {op.type for op in traced.get_concrete_function(spec).graph.get_operations()}


@pytest.mark.tensorflow
def test_tensorflow_sums_channels_last_kernels_with_its_bias_gradient_op():
    # On CPUs, reduce_mean over leading axes runs at a fifth of the memory
    # bandwidth; other axes, and GPUs (atomic adds), keep it.
    assert "BiasAddGrad" in _tf_graph_ops((0, 1, 2))
    assert "BiasAddGrad" not in _tf_graph_ops((0, 1))


@pytest.mark.tensorflow
def test_tensorflow_with_a_gpu_keeps_reduce_mean(monkeypatch):
    from keras_gc.backend import tensorflow as fast

    monkeypatch.setattr(fast, "sees_no_gpu", lambda: False)
    assert "BiasAddGrad" not in _tf_graph_ops((0, 1, 2))
    g = np.random.default_rng(0).standard_normal((3, 3, 8, 16)).astype("float32")
    result = _numpy(keras_gc.centralize(ops.convert_to_tensor(g), (0, 1, 2)))
    np.testing.assert_allclose(result, _reference(g, (0, 1, 2)), atol=1e-6)


@pytest.mark.tensorflow
def test_tensorflow_centralizes_an_eager_list_in_one_graph_call():
    # Op by op, dispatching three ops per kernel cost more than their maths.
    from keras_gc.backend import tensorflow as fast

    fast.subtract_means_graph.cache_clear()  # traces of other tests
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s).astype("float32") for s in ((3, 3, 8, 16), (5, 4))]
    axes = ((0, 1, 2), (0,))
    for _ in range(2):
        result = fast.subtract_means(
            [ops.convert_to_tensor(v) for v in values], axes, [False, False]
        )
    graph = fast.subtract_means_graph(axes)
    assert graph.experimental_get_tracing_count() == 1
    for got, g, a in zip(result, values, axes, strict=True):
        np.testing.assert_allclose(_numpy(got), _reference(g, a), atol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("in_place", [False, True], ids=["new", "in-place"])
def test_torch_averages_small_same_shaped_kernels_as_one_stack(monkeypatch, in_place):
    # Sixty 64x64 means dispatched one by one cost twice their stacked mean.
    import torch

    from keras_gc.backend import torch as fast

    stacks = []
    stack = torch.stack
    monkeypatch.setattr(
        torch, "stack", lambda tensors: stacks.append(len(tensors)) or stack(tensors)
    )
    rng = np.random.default_rng(0)
    shapes_axes = [
        ((5, 4), (0,)),
        ((3, 3, 2, 4), (0, 1, 2)),
        ((5, 4), (0,)),
        ((300, 64), (0,)),  # over the size limit: a mean of its own
        ((3, 3, 2, 4), (-4, -3, -2)),  # the same axes, but not grouped with them
        ((300, 64), (0,)),
        ((5, 4), (0,)),
        ((4, 5), (0,)),
        ((3, 3, 2, 4), (0, 1, 2)),
    ]
    values = [rng.standard_normal(s).astype("float32") for s, _ in shapes_axes]
    axes = [a for _, a in shapes_axes]
    tensors = [torch.tensor(v) for v in values]
    result = fast.subtract_means(tensors, axes, [in_place] * len(tensors))
    assert sorted(stacks) == [2, 3]
    for got, tensor, g, a in zip(result, tensors, values, axes, strict=True):
        assert (got is tensor) is in_place
        np.testing.assert_allclose(got.numpy(), _reference(g, a), atol=1e-6)


@pytest.mark.jax
@pytest.mark.parametrize(
    ("shape", "axes", "compiled", "contracts"),
    [
        ((24, 16), (0,), False, False),
        ((24, 16), (0,), True, True),
        ((3, 3, 8, 16), (0, 1, 2), True, False),
    ],
    ids=["matrix-eager", "matrix-jit", "conv-jit"],
)
def test_jax_contracts_matrices_with_ones_under_jit_only(
    monkeypatch, shape, axes, compiled, contracts
):
    # Under jit, XLA on CPU splits a mean over a matrix's first axis into two
    # kernels and a contraction with ones is one; op by op, one mean
    # dispatches faster; a convolution kernel's dot would copy it first.
    from keras_gc.backend import jax as fast

    calls = []
    tensordot = fast.ops.tensordot
    monkeypatch.setattr(
        fast.ops,
        "tensordot",
        lambda *args, **kwargs: calls.append(args) or tensordot(*args, **kwargs),
    )
    g = np.random.default_rng(0).standard_normal(shape).astype("float32")
    run = _compiled if compiled else _eager
    result = _numpy(run(lambda x: keras_gc.centralize(x, axes))(g))
    assert bool(calls) is contracts
    np.testing.assert_allclose(result, _reference(g, axes), atol=1e-6)


@pytest.mark.jax
def test_jax_step_copies_no_convolution_kernel_gradient():
    # XLA writes a convolution's kernel gradient in the backward
    # convolution's layout. A fused GC reads it once more for the mean and
    # nothing else; a copy of it into another layout would double that.
    import jax

    def compiled_step(optimizer):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((12, 12, 3)),
                keras.layers.Conv2D(8, 3),
                keras.layers.Conv2D(16, 3),
                keras.layers.Flatten(),
                keras.layers.Dense(1),
            ]
        )
        optimizer.build(model.trainable_variables)

        def step(trainable, slots, x):
            def loss(trainable):
                y, _ = model.stateless_call(trainable, [], x)
                return ops.mean(y**2)

            grads = jax.grad(loss)(trainable)
            return optimizer.stateless_apply(slots, grads, trainable)

        values = [v.value for v in model.trainable_variables]
        x = np.ones((4, 12, 12, 3), "float32")
        lowered = jax.jit(step).lower(values, [v.value for v in optimizer.variables], x)
        return lowered.compile().as_text()

    def kernel_copies(hlo):
        return [
            line
            for line in hlo.splitlines()
            if " copy(" in line and ("f32[3,3,3,8]" in line or "f32[3,3,8,16]" in line)
        ]

    bare = compiled_step(keras.optimizers.SGD(0.1))
    with_gc = compiled_step(keras_gc.wrap(keras.optimizers.SGD(0.1)))
    assert len(kernel_copies(with_gc)) == len(kernel_copies(bare))


@pytest.mark.parametrize(
    ("axes", "error", "message"),
    [
        (
            7,
            ValueError,
            r"out of range for a gradient of rank 2; each must be in \[-2, 2\)",
        ),
        ((0, -3), ValueError, "out of range"),
        (None, TypeError, "must be an int or a sequence of ints"),
        ((0, -2), ValueError, "name an axis twice"),
        ((), ValueError, "`axes` is empty"),
        (True, TypeError, "must be an int or a sequence of ints"),
        ((0.0,), TypeError, "must be an int or a sequence of ints"),
        ("0", TypeError, "must be an int or a sequence of ints"),
    ],
    ids=[
        "too-big",
        "too-negative",
        "none",
        "repeated",
        "empty",
        "bool",
        "float",
        "str",
    ],
)
def test_bad_axes_are_clear_errors(axes, error, message):
    with pytest.raises(error, match=message):
        keras_gc.centralize(np.ones((2, 3), "float32"), axes)


def test_numpy_integer_axes_are_accepted():
    g = np.array([[1.0, 2.0], [3.0, 6.0]], "float32")
    result = _numpy(keras_gc.centralize(g, (np.int64(0),)))
    np.testing.assert_allclose(result, _reference(g, 0), atol=1e-6)


# Kernels of Keras layouts, each with the axes GC averages over (NOTES section 2).
FAST_PATH_CASES = [
    ((3, 3, 8, 16), (0, 1, 2)),
    ((3, 3, 4, 2), (0, 1)),
    ((5, 2, 3), (0,)),
    ((64, 32), (0,)),
    ((64, 32), (0,)),
    ((2, 3, 3, 4, 5), (0, 1, 2, 3)),
    ((3, 3, 6, 4), (0, 1, 3)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_backend_fast_path_matches_the_keras_ops_reference(dtype, compiled):
    # The backend's list path (what plans and the wrapper run) against the
    # `keras.ops` reference and NumPy, on the same cases, in one list.
    from keras_gc import _maths, backend

    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s).astype(dtype) + 3 for s, _ in FAST_PATH_CASES]
    axes = [a for _, a in FAST_PATH_CASES]

    def fast(gradients):
        return backend.subtract_means(gradients, axes, [False] * len(axes))

    def reference(gradients):
        return _maths.subtract_means_reference(gradients, axes, [False] * len(axes))

    run = _compiled if compiled else _eager
    tensors = [ops.convert_to_tensor(v) for v in values]
    got = [_numpy(x) for x in run(fast)(tensors)]
    want = [_numpy(x) for x in run(reference)(tensors)]
    # JAX holds float64 as float32 unless x64 is on.
    held = _numpy(tensors[0]).dtype
    tolerance = {"float16": 2e-2, "float32": 2e-6, "float64": 1e-12}[held.name]
    for g, w, t, a in zip(got, want, tensors, axes, strict=True):
        assert g.dtype == w.dtype == held
        exact = _reference(_numpy(t).astype("float64"), a)
        np.testing.assert_allclose(g, exact, rtol=tolerance, atol=tolerance)
        # Agree with the reference within its own error: Keras' torch mean of
        # float64 accumulates in float32.
        slack = np.abs(w.astype("float64") - exact).max()
        np.testing.assert_allclose(g, w, rtol=0, atol=tolerance + slack)


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool"])
@pytest.mark.parametrize("kind", ["tensor", "numpy"])
def test_integer_and_bool_gradients_are_a_type_error(dtype, kind):
    values = np.ones((2, 3), dtype)
    gradient = values if kind == "numpy" else ops.convert_to_tensor(values)
    with pytest.raises(
        TypeError, match=r"floating-point gradient.*dtype u?(int\d+|bool)"
    ):
        keras_gc.centralize(gradient, 0)


def test_integer_python_lists_are_a_type_error():
    with pytest.raises(TypeError, match="floating-point gradient"):
        keras_gc.centralize([[1, 2], [3, 4]], 0)
