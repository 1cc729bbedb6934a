"""Adaptive gradient clipping (AGC), alone and before GC.

The truth here is NumPy: AGC as NFNets and optax write it (a `where` on the
unit norms), and the axes of each unit's norm written out by hand from the
Keras kernel layouts (NOTES section 2), never read from keras_gc.
"""

import re

import keras
import numpy as np
import pytest
from keras import layers

import keras_gc

LAMBDA = 0.01


def numpy_agc(g, w, axes, clipping=LAMBDA, eps=1e-3):
    """NFNets' `unitwise_clip`: rescale the units over the limit to it."""
    g_norm = np.sqrt(np.sum(np.square(g, dtype="float64"), axis=axes, keepdims=True))
    w_norm = np.sqrt(np.sum(np.square(w, dtype="float64"), axis=axes, keepdims=True))
    limit = clipping * np.maximum(w_norm, eps)
    return np.where(g_norm > limit, g * (limit / np.maximum(g_norm, 1e-6)), g)


def numpy_gc(g, axes):
    return g - g.mean(axis=axes, keepdims=True)


def unit_norms(x, axes):
    return np.sqrt(np.sum(np.square(x, dtype="float64"), axis=axes))


def varied_gradient(shape, axes, rng):
    """A gradient whose units span five orders of magnitude, so that some are
    under the limit and some over it."""
    unit_shape = tuple(1 if i in axes else d for i, d in enumerate(shape))
    scale = 10.0 ** rng.uniform(-5, 0, unit_shape)
    return (rng.standard_normal(shape) * scale).astype("float32")


def local(path):
    """The path inside the model: a Sequential puts its own name first."""
    return re.sub(r"^sequential[^/]*/", "", path)


def planned(model, **options):
    return {local(e.path): e for e in keras_gc.plan(model, **options)}


def by_name(model):
    return {local(v.path): v for v in model.trainable_variables}


# Layer, input shape, the axes of each unit's norm of its kernel, by hand.
LAYOUTS = {
    "Dense": (lambda: layers.Dense(5, name="unit"), (7,), (0,)),
    "Conv1D": (lambda: layers.Conv1D(4, 3, name="unit"), (8, 3), (0, 1)),
    "Conv2D": (lambda: layers.Conv2D(4, 3, name="unit"), (6, 6, 3), (0, 1, 2)),
    "Conv3D": (
        lambda: layers.Conv3D(4, 2, name="unit"),
        (4, 4, 4, 2),
        (0, 1, 2, 3),
    ),
    "Conv2DTranspose": (
        lambda: layers.Conv2DTranspose(4, 3, name="unit"),
        (5, 5, 3),
        (0, 1, 3),
    ),
    "DepthwiseConv2D": (
        lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, name="unit"),
        (6, 6, 3),
        (0, 1),
    ),
    "EinsumDense-output-first": (
        lambda: layers.EinsumDense("ab,cb->ac", output_shape=(6,), name="unit"),
        (5,),
        (1,),
    ),
}


def _fresh(name):
    make, input_shape, axes = LAYOUTS[name]
    model = keras.Sequential([keras.Input(input_shape), make()])
    return model, {"unit/kernel": axes}


def _mha_model():
    query = keras.Input((4, 6))
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=3, name="mha")
    model = keras.Model(query, attention(query, query))
    expected = {f"mha/{n}/kernel": (0,) for n in ("query", "key", "value")}
    expected["mha/attention_output/kernel"] = (0, 1)
    return model, expected


def layout_model(name):
    return _mha_model() if name == "MultiHeadAttention" else _fresh(name)


ALL_LAYOUTS = [*LAYOUTS, "MultiHeadAttention"]


@pytest.mark.parametrize("name", ALL_LAYOUTS)
def test_units_are_the_plans_output_axes(name):
    model, expected = layout_model(name)
    plan = planned(model, agc=LAMBDA, agc_head=False)
    assert {p: e.agc_axes for p, e in plan.items() if e.clipped} == expected
    # AGC alone keeps the units but centralizes nothing.
    alone = planned(model, agc=LAMBDA, agc_head=False, gc=False)
    assert {p: e.agc_axes for p, e in alone.items() if e.clipped} == expected
    assert not any(e.centralized for e in alone.values())


@pytest.mark.parametrize("name", ALL_LAYOUTS)
def test_clip_equals_numpy_and_meets_the_limit(name):
    model, expected = layout_model(name)
    rng = np.random.default_rng(0)
    variables = model.trainable_variables
    names = [local(v.path) for v in variables]
    grads = [
        varied_gradient(v.shape, expected.get(n, ()), rng)
        for v, n in zip(variables, names, strict=True)
    ]
    plan = keras_gc.plan(model, agc=LAMBDA, agc_head=False, gc=False)
    clipped = plan.clip([keras.ops.convert_to_tensor(g) for g in grads], variables)
    for n, v, g, c in zip(names, variables, grads, clipped, strict=True):
        c = keras.ops.convert_to_numpy(c)
        axes = expected.get(n)
        if axes is None:  # biases are not clipped
            np.testing.assert_array_equal(c, g, err_msg=n)
            continue
        w = keras.ops.convert_to_numpy(v)
        np.testing.assert_allclose(c, numpy_agc(g, w, axes), rtol=1e-5, err_msg=n)
        limit = LAMBDA * np.maximum(unit_norms(w, axes), 1e-3)
        over = unit_norms(g, axes) > limit
        assert over.any() and not over.all(), n
        after = unit_norms(c, axes)
        assert np.all(after <= limit * (1 + 1e-5)), n
        np.testing.assert_allclose(after[over], limit[over], rtol=1e-5, err_msg=n)
        # Units under the limit are untouched, bit for bit.
        keep = np.broadcast_to(np.expand_dims(~over, axes), g.shape)
        np.testing.assert_array_equal(c[keep], g[keep], err_msg=n)


def test_centralize_gradients_clips_then_centralizes():
    model, expected = layout_model("Conv2D")
    variables = model.trainable_variables
    kernel = keras.ops.convert_to_numpy(variables[0])
    rng = np.random.default_rng(5)
    grads = [varied_gradient(v.shape, (0, 1, 2), rng) for v in variables]
    out = keras_gc.centralize_gradients(
        [keras.ops.convert_to_tensor(g) for g in grads],
        variables,
        agc=LAMBDA,
        agc_head=False,
    )
    axes = expected["unit/kernel"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out[0]),
        numpy_gc(numpy_agc(grads[0], kernel, axes), axes),
        rtol=1e-5,
        atol=1e-8,
    )
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out[1]), grads[1])


# Where a peer's unit rule (a function of the rank only) reads a Keras kernel
# wrongly: optax (HWIO, rank 3 as multi-head linear) and timm / pytorch-
# optimizer / Ranger21 (PyTorch's output-first layout, the norm over all axes
# but the first). Each row is a row of the table in docs/agc.md.
def optax_axes(rank):
    return {2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}[rank]


def timm_axes(rank):
    return tuple(range(1, rank))


# (layout, optax agrees, timm agrees): the rows of the table in docs/agc.md.
PEERS = [
    ("Dense", True, False),
    ("Conv2D", True, False),
    ("Conv3D", True, False),
    ("Conv1D", False, False),
    ("Conv2DTranspose", False, False),
    ("DepthwiseConv2D", False, False),
    ("EinsumDense-output-first", False, True),
    ("MultiHeadAttention", False, False),
]


@pytest.mark.parametrize("peer", ["optax", "timm"])
@pytest.mark.parametrize(("name", "optax_agrees", "timm_agrees"), PEERS)
def test_where_the_peers_units_differ_from_ours(name, optax_agrees, timm_agrees, peer):
    model, expected = layout_model(name)
    path = (
        "mha/attention_output/kernel" if name == "MultiHeadAttention" else "unit/kernel"
    )
    axes = expected[path]
    variable = by_name(model)[path]
    rank = len(variable.shape)
    peer_axes = optax_axes(rank) if peer == "optax" else timm_axes(rank)
    agrees = optax_agrees if peer == "optax" else timm_agrees
    assert (peer_axes == axes) is agrees
    g = varied_gradient(variable.shape, axes, np.random.default_rng(1))
    w = keras.ops.convert_to_numpy(variable)
    ours = keras.ops.convert_to_numpy(keras_gc.adaptive_clip(g, w, axes, LAMBDA))
    theirs = numpy_agc(g, w, peer_axes)
    assert np.allclose(ours, theirs, rtol=1e-5) is agrees


@pytest.mark.jax
@pytest.mark.parametrize("name", ["Dense", "Conv2D", "Conv3D"])
def test_agrees_with_optax_where_optax_reads_keras_right(name):
    optax = pytest.importorskip("optax", reason="optax is the bench-jax extra")
    model, expected = _fresh(name)
    ((path, axes),) = expected.items()
    variable = by_name(model)[path]
    g = varied_gradient(variable.shape, axes, np.random.default_rng(2))
    w = keras.ops.convert_to_numpy(variable)
    transform = optax.adaptive_grad_clip(LAMBDA)
    theirs, _ = transform.update([g], transform.init([w]), [w])
    ours = keras_gc.adaptive_clip(g, w, axes, LAMBDA)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs[0]), rtol=1e-6)


def test_zero_weights_are_counted_as_eps():
    # A unit initialized at zero may still move, by at most clipping * eps.
    w = np.zeros((3, 2), "float32")
    w[:, 1] = [3.0, 4.0, 0.0]
    g = np.ones((3, 2), "float32")
    out = keras.ops.convert_to_numpy(keras_gc.adaptive_clip(g, w, 0, 0.1, eps=0.5))
    np.testing.assert_allclose(unit_norms(out, 0), [0.1 * 0.5, 0.1 * 5.0], rtol=1e-6)
    np.testing.assert_allclose(out, numpy_agc(g, w, 0, 0.1, eps=0.5), rtol=1e-6)


def test_adaptive_clip_rank_5_and_float16():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((2, 2, 2, 3, 4)).astype("float32")
    g = varied_gradient(w.shape, (0, 1, 2, 3), rng)
    axes = (0, 1, 2, 3)
    out = keras.ops.convert_to_numpy(keras_gc.adaptive_clip(g, w, axes, LAMBDA))
    np.testing.assert_allclose(out, numpy_agc(g, w, axes), rtol=1e-5)
    # Large enough for float16 to be exact to 3 digits, whose squares sum
    # past float16's range: the norms must be taken in float32.
    g16 = (g * 1e3).astype("float16")
    half = keras_gc.adaptive_clip(g16, w * 1e3, axes, LAMBDA)
    assert keras.backend.standardize_dtype(half.dtype) == "float16"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(half).astype("float32"),
        numpy_agc(g16.astype("float32"), w * 1e3, axes),
        rtol=2e-3,
        atol=1e-3,
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"axes": (), "clipping": 0.1}, ValueError, "`axes` is empty"),
        ({"axes": 0, "clipping": 0.0}, ValueError, "`clipping` must be greater"),
        ({"axes": 0, "clipping": 0.1, "eps": -1.0}, ValueError, "`eps` must be"),
        ({"axes": 0, "clipping": "0.1"}, TypeError, "`clipping` must be a number"),
    ],
)
def test_adaptive_clip_bad_arguments(kwargs, error, message):
    g = np.ones((2, 3), "float32")
    with pytest.raises(error, match=message):
        keras_gc.adaptive_clip(g, g, **kwargs)


def test_adaptive_clip_shape_mismatch():
    with pytest.raises(ValueError, match=r"`weight` has shape \(3, 2\)"):
        keras_gc.adaptive_clip(np.ones((2, 3)), np.ones((3, 2)), 0, 0.1)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"gc": False}, ValueError, "leaves nothing to do"),
        ({"agc": 0.0}, ValueError, "`agc` must be greater than 0"),
        ({"agc": -1}, ValueError, "`agc` must be greater than 0"),
        ({"agc": "big"}, TypeError, "`agc` must be a number"),
        ({"agc": 0.1, "agc_eps": 0}, ValueError, "`agc_eps` must be greater"),
        ({"gc": 1}, TypeError, "`gc` must be a bool"),
        ({"agc": 0.1, "agc_head": True}, ValueError, "received True"),
        ({"agc": 0.1, "agc_head": 3}, TypeError, "`agc_head` must"),
    ],
)
def test_bad_options(options, error, message):
    with pytest.raises(error, match=message):
        keras_gc.wrap(keras.optimizers.SGD(), **options)
    with pytest.raises(error, match=message):
        keras_gc.optimizers.SGD(**options)
    with pytest.raises(error, match=message):
        keras_gc.GradientCentralizationOptimizer(keras.optimizers.SGD(), **options)
    with pytest.raises(error, match=message):
        keras_gc.plan(done_when_model(), **options)


# The model of issue 26's "Done when", with the head last.
def done_when_model():
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="tanh", name="conv")(inputs)
    x = layers.Conv2DTranspose(5, 3, padding="same", activation="tanh", name="up")(x)
    x = layers.DepthwiseConv2D(
        3, depth_multiplier=2, padding="same", activation="tanh", name="depthwise"
    )(x)
    x = layers.Flatten()(x)
    x = layers.EinsumDense(
        "ab,cb->ac", output_shape=(8,), activation="tanh", name="einsum"
    )(x)
    x = layers.Dense(7, activation="tanh", name="hidden")(x)
    outputs = layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs)


# By hand: the axes of each kernel's unit norms (and of its GC mean).
DONE_WHEN_AXES = {
    "conv/kernel": (0, 1, 2),
    "up/kernel": (0, 1, 3),
    "depthwise/kernel": (0, 1),
    "einsum/kernel": (1,),
    "hidden/kernel": (0,),
    "head/kernel": (0,),
}
HEAD = "head/kernel"


def data(count=16):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((count, 6, 6, 3)).astype("float32")
    y = rng.standard_normal((count, 3)).astype("float32")
    return x, y


def one_step(model, optimizer, jit_compile=False):
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    x, y = data()
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return {p: keras.ops.convert_to_numpy(v) for p, v in by_name(model).items()}


def twins(count=2):
    first = done_when_model()
    others = [done_when_model() for _ in range(count - 1)]
    for other in others:
        other.set_weights(first.get_weights())
    return [first, *others]


def reference_step(before, raw, gc, clip_head=False):
    """SGD(1.0) on AGC'd (then, with `gc`, centralized) gradients, in NumPy."""
    after = {}
    for path, w in before.items():
        g = raw[path]
        axes = DONE_WHEN_AXES.get(path)
        if axes is not None and (path != HEAD or clip_head):
            g = numpy_agc(g, w, axes)
        if axes is not None and gc:
            g = numpy_gc(g, axes)
        after[path] = w - g
    return after


def assert_close(actual, expected):
    for path in expected:
        np.testing.assert_allclose(
            actual[path], expected[path], rtol=1e-4, atol=2e-6, err_msg=path
        )


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("gc", [True, False], ids=["agc+gc", "agc"])
def test_one_step_equals_numpy(gc, jit_compile):
    bare_model, model = twins()
    before = {p: keras.ops.convert_to_numpy(v) for p, v in by_name(model).items()}
    # Bare SGD(1.0) moves each weight by minus its raw gradient (taken eagerly:
    # the same gradient, without a second compile).
    bare = one_step(bare_model, keras.optimizers.SGD(1.0), jit_compile=False)
    raw = {p: before[p] - bare[p] for p in before}
    optimizer = keras_gc.wrap(keras.optimizers.SGD(1.0), agc=LAMBDA, gc=gc)
    after = one_step(model, optimizer, jit_compile)
    expected = reference_step(before, raw, gc)
    assert_close(after, expected)
    # The case bites: AGC scaled some units, and the head was left alone.
    clipped = {p: e.clipped for p, e in planned_entries(optimizer).items()}
    assert clipped == {p: p in DONE_WHEN_AXES and p != HEAD for p in before}
    assert not np.allclose(
        expected["conv/kernel"], before["conv/kernel"] - raw["conv/kernel"]
    )
    head_clipped = reference_step(before, raw, gc, clip_head=True)[HEAD]
    assert not np.allclose(head_clipped, after[HEAD], rtol=1e-4, atol=2e-6)


def planned_entries(optimizer):
    return {local(e.path): e for e in optimizer.plan}


def test_update_mode_clips_the_gradient_before_the_inner_optimizer():
    # SGD's step is minus the gradient, so centralizing the step equals
    # centralizing the gradient: both modes give the same numbers.
    bare_model, model = twins()
    before = {p: keras.ops.convert_to_numpy(v) for p, v in by_name(model).items()}
    bare = one_step(bare_model, keras.optimizers.SGD(1.0))
    raw = {p: before[p] - bare[p] for p in before}
    optimizer = keras_gc.wrap(keras.optimizers.SGD(1.0), agc=LAMBDA, mode="update")
    assert_close(one_step(model, optimizer), reference_step(before, raw, gc=True))


def test_agc_head_false_clips_the_head_and_patterns_name_it():
    bare_model, model, named = twins(3)
    before = {p: keras.ops.convert_to_numpy(v) for p, v in by_name(model).items()}
    bare = one_step(bare_model, keras.optimizers.SGD(1.0))
    raw = {p: before[p] - bare[p] for p in before}
    optimizer = keras_gc.wrap(keras.optimizers.SGD(1.0), agc=LAMBDA, agc_head=False)
    expected = reference_step(before, raw, gc=True, clip_head=True)
    assert_close(one_step(model, optimizer), expected)
    optimizer = keras_gc.wrap(
        keras.optimizers.SGD(1.0), agc=LAMBDA, agc_head=r"hidden/kernel"
    )
    one_step(named, optimizer)
    clipped = {p for p, e in planned_entries(optimizer).items() if e.clipped}
    assert clipped == set(DONE_WHEN_AXES) - {"hidden/kernel"}
    assert "named by agc_head" in planned_entries(optimizer)["hidden/kernel"].reason


def test_loss_scale_gives_the_step_without_it():
    # LossScaleOptimizer unscales the gradient before our apply: AGC on the
    # scaled gradient would clip every unit to a 2**15 times smaller step.
    plain_model, scaled_model = twins()
    plain = one_step(plain_model, keras_gc.wrap(keras.optimizers.SGD(1.0), agc=LAMBDA))
    scaled_optimizer = keras_gc.wrap(
        keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(1.0), initial_scale=2.0**15
        ),
        agc=LAMBDA,
    )
    assert isinstance(scaled_optimizer, keras.optimizers.LossScaleOptimizer)
    scaled = one_step(scaled_model, scaled_optimizer)
    assert float(scaled_optimizer.dynamic_scale) == 2.0**15
    for path in plain:
        np.testing.assert_allclose(
            scaled[path], plain[path], rtol=1e-6, atol=1e-7, err_msg=path
        )


def test_plan_shows_agc_and_the_head():
    plan = keras_gc.plan(done_when_model(), agc=LAMBDA)
    text = str(plan)
    assert "AGC" in text.splitlines()[0]
    assert "Adaptive gradient clipping (λ=0.01, ε=0.001) on 5 of 11 variables." in text
    head = next(e for e in plan if e.path.endswith(HEAD))
    assert not head.clipped and head.centralized
    assert "no AGC: the final classifier, from the model's outputs" in head.reason
    assert "AGC" not in str(keras_gc.plan(done_when_model())).splitlines()[0]


def _head_paths(model, **options):
    return {
        local(e.path)
        for e in keras_gc.plan(model, agc=LAMBDA, **options)
        if e.output_axes and not e.clipped
    }


def test_head_is_found_through_weightless_layers_and_every_output():
    inputs = keras.Input((4,))
    x = layers.Dense(5, name="trunk")(inputs)
    a = layers.Dense(3, name="head_a")(x)
    a = layers.Dropout(0.1)(layers.BatchNormalization()(a))
    a = layers.Softmax()(a)
    b = layers.Activation("tanh")(layers.Dense(2, name="head_b")(x))
    both = layers.Add()(
        [layers.Dense(2, name="left")(x), layers.Dense(2, name="right")(x)]
    )
    model = keras.Model(inputs, [a, b, both])
    assert _head_paths(model) == {
        "head_a/kernel",
        "head_b/kernel",
        "left/kernel",
        "right/kernel",
    }


def test_head_inside_a_nested_model():
    inner = keras.Sequential(
        [
            keras.Input((5,)),
            layers.Dense(4, name="inner_hidden"),
            layers.Dense(2, name="inner_head"),
        ],
        name="inner",
    )
    inputs = keras.Input((3,))
    model = keras.Model(inputs, inner(layers.Dense(5, name="first")(inputs)))
    assert _head_paths(model) == {"inner/inner_head/kernel"}


def test_head_by_the_fallback_rule_when_no_model_has_outputs():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = layers.Dense(4, name="hidden")
            self.last = layers.Dense(2, name="last")

        def call(self, x):
            return self.last(self.hidden(x))

    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    plan = keras_gc.plan(model.trainable_variables, agc=LAMBDA)
    head = next(e for e in plan if e.path.endswith("last/kernel"))
    assert not head.clipped
    assert "fallback rule" in head.reason
    assert [e.clipped for e in plan if e.path.endswith("hidden/kernel")] == [True]


def test_optimizer_built_from_variables_finds_the_model():
    model = done_when_model()
    optimizer = keras_gc.wrap(keras.optimizers.SGD(), agc=LAMBDA)
    optimizer.build(model.trainable_variables)
    head = planned_entries(optimizer)[HEAD]
    assert "from the model's outputs" in head.reason


def test_options_are_saved_and_reloaded(tmp_path):
    model = done_when_model()
    optimizer = keras_gc.wrap(
        keras.optimizers.Adam(1e-3),
        gc=False,
        agc=0.02,
        agc_eps=1e-4,
        agc_head=["hidden/kernel"],
    )
    one_step(model, optimizer)
    config = optimizer.get_config()
    assert {k: config[k] for k in ("gc", "agc", "agc_eps", "agc_head")} == {
        "gc": False,
        "agc": 0.02,
        "agc_eps": 1e-4,
        "agc_head": ["hidden/kernel"],
    }
    path = tmp_path / "agc.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.optimizer.get_config() == config
    assert loaded.optimizer.options == optimizer.options
    x, y = data()
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert [e.clipped for e in loaded.optimizer.plan] == [
        e.clipped for e in optimizer.plan
    ]
    off = keras_gc.wrap(keras.optimizers.SGD(), agc=0.1, agc_head=False)
    restored = keras_gc.GradientCentralizationOptimizer.from_config(off.get_config())
    assert restored.options.agc_head is False


def test_a_head_predicate_survives_a_config_round_trip():
    optimizer = keras_gc.wrap(
        keras.optimizers.SGD(), agc=0.1, agc_head=lambda v: "head" in v.path
    )
    config = keras.saving.serialize_keras_object(optimizer)
    with keras.saving.custom_object_scope({}):
        restored = keras.saving.deserialize_keras_object(config, safe_mode=False)
    (predicate,) = restored.options.agc_head
    assert predicate(keras.Variable(np.zeros(2), name="head"))
    assert not predicate(keras.Variable(np.zeros(2), name="body"))
