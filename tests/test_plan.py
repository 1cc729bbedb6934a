"""Which variables are centralized, and along which axes, for each layer kind.

The expected output axes are the kernel layouts of Keras 3, written out by
hand (NOTES section 2), not taken from keras_gc.
"""

import warnings

import keras
import numpy as np
import pytest
from _models import conv_and_dense
from keras import layers

import keras_gc


def _plan_of(layer, input_shape, **options):
    model = keras.Sequential([keras.Input(input_shape), layer])
    return {
        e.path.split(f"{layer.name}/", 1)[1]: e for e in keras_gc.plan(model, **options)
    }


def _centralized(plan):
    return {path: e.output_axes for path, e in plan.items() if e.centralized}


@pytest.mark.parametrize(
    ("layer", "input_shape", "expected"),
    [
        (layers.Dense(3), (4,), {"kernel": (1,)}),
        (layers.Conv1D(3, 2), (8, 4), {"kernel": (2,)}),
        (layers.Conv2D(3, 2), (8, 8, 4), {"kernel": (3,)}),
        (layers.Conv3D(3, 2), (4, 4, 4, 2), {"kernel": (4,)}),
        (layers.Conv1DTranspose(3, 2), (8, 4), {"kernel": (1,)}),
        (layers.Conv2DTranspose(3, 2), (8, 8, 4), {"kernel": (2,)}),
        (layers.Conv3DTranspose(3, 2), (4, 4, 4, 2), {"kernel": (3,)}),
        (layers.DepthwiseConv1D(3, depth_multiplier=2), (8, 4), {"kernel": (1, 2)}),
        (layers.DepthwiseConv2D(3), (8, 8, 4), {"kernel": (2, 3)}),
        (
            layers.SeparableConv2D(5, 3, depth_multiplier=2),
            (8, 8, 4),
            {"depthwise_kernel": (2, 3), "pointwise_kernel": (3,)},
        ),
        (
            layers.SeparableConv1D(5, 3),
            (8, 4),
            {"depthwise_kernel": (1, 2), "pointwise_kernel": (2,)},
        ),
        (
            layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3)),
            (6, 4),
            {"kernel": (1, 2)},
        ),
        (
            layers.EinsumDense("ab,bc->ac", output_shape=(3,)),
            (4,),
            {"kernel": (1,)},
        ),
        (
            layers.LSTM(3),
            (5, 4),
            {"lstm_cell/kernel": (1,), "lstm_cell/recurrent_kernel": (1,)},
        ),
        (
            layers.GRU(3),
            (5, 4),
            {"gru_cell/kernel": (1,), "gru_cell/recurrent_kernel": (1,)},
        ),
        (layers.Embedding(10, 4), (3,), {}),
        (layers.BatchNormalization(), (4,), {}),
        (layers.LayerNormalization(axis=(1, 2)), (3, 4), {}),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, layers.Layer) else "",
)
def test_layer_layouts(layer, input_shape, expected):
    assert _centralized(_plan_of(layer, input_shape)) == expected


def test_multi_head_attention_keeps_heads_and_head_dim():
    query = keras.Input((5, 8))
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=3)
    model = keras.Model(query, attention(query, query))
    plan = {e.path.split(f"{attention.name}/", 1)[1]: e for e in keras_gc.plan(model)}
    for name in ("query", "key", "value"):
        assert plan[f"{name}/kernel"].output_axes == (1, 2)
        assert plan[f"{name}/kernel"].axes == (0,)
        assert not plan[f"{name}/bias"].centralized
    assert plan["attention_output/kernel"].output_axes == (2,)


def test_layout_follows_the_layer_not_its_name():
    renamed = _plan_of(layers.Conv2DTranspose(3, 2, name="dense"), (8, 8, 4))
    assert renamed["kernel"].output_axes == (2,)
    renamed = _plan_of(layers.DepthwiseConv2D(3, name="conv2d"), (8, 8, 4))
    assert renamed["kernel"].output_axes == (2, 3)


def test_gru_bias_with_reset_after_is_not_a_kernel():
    plan = _plan_of(layers.GRU(3, reset_after=True), (5, 4))
    assert plan["gru_cell/bias"].shape == (2, 9)
    assert not plan["gru_cell/bias"].centralized


def test_reduced_size_one_is_left_alone():
    plan = _plan_of(layers.Dense(4), (1,))
    assert not plan["kernel"].centralized
    assert "zero the gradient" in plan["kernel"].reason


def test_variable_without_layer_keeps_last_axis():
    variable = keras.Variable(np.zeros((2, 3, 4)), name="free")
    (entry,) = keras_gc.plan([variable])
    assert entry.layer is None
    assert entry.output_axes == (2,)
    assert entry.axes == (0, 1)


def test_non_trainable_variables_are_left_alone():
    frozen = keras.Variable(np.zeros((3, 3)), trainable=False, name="frozen")
    (entry,) = keras_gc.plan([frozen])
    assert (entry.centralized, entry.reason) == (False, "not trainable")


@pytest.mark.jax
@pytest.mark.tensorflow
def test_integer_variables_are_left_alone():
    # Torch cannot make an integer variable trainable.
    (entry,) = keras_gc.plan([keras.Variable(np.zeros((3, 3)), dtype="int32")])
    assert not entry.centralized
    assert entry.reason.startswith("not a float variable")


def _centralized_paths(plan):
    # Drop the Sequential model's own, numbered, name.
    return [e.path.split("/", 1)[1] for e in plan if e.centralized]


def test_conv_only():
    plan = keras_gc.plan(conv_and_dense((8, 8, 3)), conv_only=True)
    assert _centralized_paths(plan) == ["conv/kernel"]


def test_include_and_exclude_by_regex_and_predicate():
    model = conv_and_dense((8, 8, 3))
    assert _centralized_paths(keras_gc.plan(model, include="head")) == ["head/kernel"]
    assert _centralized_paths(keras_gc.plan(model, exclude=["conv"])) == ["head/kernel"]
    assert _centralized_paths(
        keras_gc.plan(model, exclude=lambda v: len(v.shape) == 4)
    ) == ["head/kernel"]
    both = keras_gc.plan(model, include=["conv", "head"], exclude="head")
    assert _centralized_paths(both) == ["conv/kernel"]


def test_unmatched_include_is_reported():
    plan = keras_gc.plan(conv_and_dense((8, 8, 3)), include=["conv", "nothing_here"])
    assert plan.unmatched_include == ("nothing_here",)
    assert "nothing_here" in str(plan)


def test_output_axes_override_by_pattern_and_function():
    model = conv_and_dense((8, 8, 3))
    plan = keras_gc.plan(model, output_axes={"conv/kernel": (2, -1)})
    assert plan[0].output_axes == (2, 3)
    assert plan[0].axes == (0, 1)
    plan = keras_gc.plan(
        model, output_axes=lambda v: 0 if v.path.endswith("head/kernel") else None
    )
    assert plan[2].output_axes == (0,)
    assert plan[0].output_axes == (3,)


def test_output_axes_override_can_force_an_embedding():
    plan = _plan_of(layers.Embedding(10, 4), (3,), output_axes={"embeddings": 0})
    assert plan["embeddings"].output_axes == (0,)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"conv/kernel": 4}, r"ints in \[-4, 4\)"),
        ({"conv": (0, 1, 2, 3)}, "every axis"),
    ],
)
def test_bad_output_axes_override(override, message):
    with pytest.raises(ValueError, match=message):
        keras_gc.plan(conv_and_dense((8, 8, 3)), output_axes=override)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"include": "("}, ValueError, "not a valid regex"),
        ({"exclude": [3]}, TypeError, "regex strings or predicates"),
        ({"output_axes": [1]}, TypeError, "mapping"),
    ],
)
def test_bad_options(options, error, message):
    with pytest.raises(error, match=message):
        keras_gc.plan(conv_and_dense((8, 8, 3)), **options)


def test_bad_target():
    with pytest.raises(TypeError, match="Keras layer or model"):
        keras_gc.plan("model")


def test_printed_plan_shows_every_variable():
    text = str(keras_gc.plan(conv_and_dense((8, 8, 3))))
    assert "conv/kernel" in text
    assert "head/bias" in text
    assert "on 2 of 4 variables" in text


def test_centralize_gradients_matches_numpy():
    model = conv_and_dense((8, 8, 3))
    grads = [
        np.random.standard_normal(v.shape).astype("float32") for v in model.weights
    ]
    result = keras_gc.centralize_gradients(grads, model.trainable_variables)
    expected = [
        grads[0] - grads[0].mean(axis=(0, 1, 2), keepdims=True),
        grads[1],
        grads[2] - grads[2].mean(axis=0, keepdims=True),
        grads[3],
    ]
    for got, want in zip(result, expected, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, atol=1e-6)


def test_plan_centralizes_each_kernel_over_its_own_axes():
    # Channels-last kernels take the backends' fast means, the others
    # `keras.ops.mean`; in one list, each gets its own mean over its own axes.
    model = keras.Sequential(
        [
            keras.Input((6, 6, 4)),
            layers.Conv2DTranspose(4, 3, padding="same"),
            layers.Conv2DTranspose(4, 3, padding="same"),
            layers.DepthwiseConv2D(3, padding="same"),
            layers.DepthwiseConv2D(3, padding="same"),
            layers.Flatten(),
            layers.Dense(5),
            layers.Dense(5),
            layers.Dense(5),
            layers.Dense(5),
        ]
    )
    # By layer kind (NOTES section 2): what each kernel's mean is taken over.
    reduced = [(0, 1, 3), (0, 1, 3), (0, 1), (0, 1), (0,), (0,), (0,), (0,)]
    rng = np.random.default_rng(0)
    grads = [
        keras.ops.convert_to_tensor(rng.standard_normal(v.shape).astype("float32"))
        for v in model.trainable_variables
    ]
    result = keras_gc.plan(model).centralize(grads)
    kernels = [i for i, v in enumerate(model.trainable_variables) if v.name == "kernel"]
    assert len(kernels) == len(reduced)
    for i, got in enumerate(result):
        g = keras.ops.convert_to_numpy(grads[i])
        want = g
        if i in kernels:
            axes = reduced[kernels.index(i)]
            want = g - g.mean(axis=axes, keepdims=True)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, atol=1e-6)


def test_none_gradients_pass_through():
    model = conv_and_dense((8, 8, 3))
    result = keras_gc.centralize_gradients([None] * 4, model.trainable_variables)
    assert result == [None] * 4
    # Nothing to overwrite: no backend refuses, torch's `_foreach` ops included.
    assert keras_gc.plan(model).centralize([None] * 4, in_place=True) == [None] * 4


def test_wrong_number_of_gradients():
    plan = keras_gc.plan(conv_and_dense((8, 8, 3)))
    with pytest.raises(ValueError, match="Expected 4 gradients"):
        plan.centralize([None])


def test_no_warning_for_a_plain_plan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_gc.plan(conv_and_dense((8, 8, 3)))


def _mixed_model():
    query = keras.Input((6, 8))
    x = layers.MultiHeadAttention(num_heads=2, key_dim=3, name="dense")(query, query)
    x = layers.Reshape((6, 8, 1))(x)
    x = layers.Conv2DTranspose(3, 2, name="conv2d")(x)
    x = layers.DepthwiseConv2D(3, name="dense_1")(x)
    x = layers.EinsumDense("abcd,de->abce", output_shape=(None, None, 2))(x)
    return keras.Model(query, layers.Dense(1)(x))


def test_plan_of_a_model_does_not_search_the_heap(monkeypatch):
    import gc

    model = _mixed_model()
    monkeypatch.setattr(gc, "get_objects", lambda *a: pytest.fail("heap searched"))
    planned = keras_gc.plan(model)
    assert [e.layer for e in planned if e.centralized] == [
        "EinsumDense",
        "EinsumDense",
        "EinsumDense",
        "EinsumDense",
        "Conv2DTranspose",
        "DepthwiseConv2D",
        "EinsumDense",
        "Dense",
    ]


def test_variables_alone_find_the_same_owners_as_their_model():
    # The optimizer's build sees variables only: its search of the live
    # layers must give the plan the model gives, renamed layers and all.
    model = _mixed_model()
    assert keras_gc.plan(model.trainable_variables) == keras_gc.plan(model)
