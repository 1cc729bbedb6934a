"""LoRA factors and quantized layers: each factor follows its layer's kernel layout.

The expected axes are written out by hand from `enable_lora`'s shapes
(`a`: `kernel.shape[:-1] + (rank,)`, `b`: `(rank, kernel.shape[-1])`) and the
kernel layouts of NOTES section 2, not taken from keras_gc.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import layers

import keras_gc

RANK = 2


def _lora_model(layer, input_shape):
    inputs = keras.Input(input_shape)
    model = keras.Model(inputs, layer(inputs))
    return model


def _factor_plans(model):
    return {
        "/".join(e.path.split("/")[-2:]): e
        for e in keras_gc.plan(model)
        if "lora" in e.path
    }


def _attention(inputs):
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=3, name="mha")
    return attention, attention(inputs, inputs)


@pytest.mark.parametrize(
    ("make", "input_shape", "expected"),
    [
        # Dense (in=4, out=3): a (4, r) carries the inputs; b (r, 3) the outputs.
        (lambda: layers.Dense(3, name="d"), (4,), {"d": ((1,), (1,))}),
        # Output axis first, `abc,dc->abd`: kernel (d=6, c=8). a (6, r) carries
        # only the output d, so it is averaged over r; b (r, 8) carries the
        # input c and is averaged over it.
        (
            lambda: layers.EinsumDense("abc,dc->abd", output_shape=(5, 6), name="d"),
            (5, 8),
            {"d": ((0,), (0,))},
        ),
        (
            lambda: layers.EinsumDense("ab,bc->ac", output_shape=(3,), name="d"),
            (4,),
            {"d": ((1,), (1,))},
        ),
        # `btd,ndh->btnh`, as keras_hub's attention: kernel (n, d, h); a (n, d, r)
        # is averaged over d only; b (r, h) carries the output h.
        (
            lambda: layers.EinsumDense(
                "btd,ndh->btnh", output_shape=(None, 2, 3), name="d"
            ),
            (5, 8),
            {"d": ((0, 2), (1,))},
        ),
        # Conv2D kernel (kh, kw, in, out): a (kh, kw, in, r); b (r, out).
        (lambda: layers.Conv2D(3, 2, name="d"), (6, 6, 4), {"d": ((3,), (1,))}),
    ],
    ids=[
        "Dense",
        "EinsumDense-output-first",
        "EinsumDense",
        "EinsumDense-heads",
        "Conv2D",
    ],
)
def test_lora_factors_follow_the_kernel_layout(make, input_shape, expected):
    layer = make()
    model = _lora_model(layer, input_shape)
    layer.enable_lora(RANK)
    plans = _factor_plans(model)
    for name, (a_axes, b_axes) in expected.items():
        assert plans[f"{name}/lora_kernel_a"].output_axes == a_axes
        assert plans[f"{name}/lora_kernel_b"].output_axes == b_axes
        assert "LoRA factor A" in plans[f"{name}/lora_kernel_a"].reason


def test_multi_head_attention_lora_keeps_heads():
    inputs = keras.Input((5, 8))
    attention, outputs = _attention(inputs)
    model = keras.Model(inputs, outputs)
    for dense in (
        attention.query_dense,
        attention.key_dense,
        attention.value_dense,
        attention.output_dense,
    ):
        dense.enable_lora(RANK)
    plans = _factor_plans(model)
    for name in ("query", "key", "value"):
        # kernel (8, heads, head_dim): a (8, heads, r) averaged over the 8 inputs
        # only, never over heads; b (r, head_dim) carries the output head_dim.
        assert plans[f"{name}/lora_kernel_a"].axes == (0,)
        assert plans[f"{name}/lora_kernel_b"].axes == (0,)
    # Output kernel (heads, head_dim, 8): a (heads, head_dim, r) carries inputs.
    assert plans["attention_output/lora_kernel_a"].axes == (0, 1)
    assert plans["attention_output/lora_kernel_b"].axes == (0,)


def _effective_input_means(layer, input_axes):
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    return kernel.mean(axis=input_axes)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_sgd_gc_keeps_the_effective_kernel_mean_when_b_carries_the_inputs(
    jit_compile,
):
    """`abc,dc->abd`: the zero-initialized `b` carries the input axis c, so
    centralizing it keeps the effective kernel's per-output mean exactly."""

    def drift(optimizer, jit_compile=jit_compile):
        keras.utils.set_random_seed(0)
        layer = layers.EinsumDense("abc,dc->abd", output_shape=(5, 6), name="lora")
        model = _lora_model(layer, (5, 8))
        layer.enable_lora(RANK)
        before = _effective_input_means(layer, 1)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 5, 8)).astype("float32")
        y = rng.normal(size=(32, 5, 6)).astype("float32")
        model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        return np.abs(_effective_input_means(layer, 1) - before).max()

    assert drift(keras_gc.wrap(keras.optimizers.SGD(0.5))) < 1e-6
    # The control: without GC the same run, eager, moves the means.
    assert drift(keras.optimizers.SGD(0.5), jit_compile=False) > 1e-3


def _dense_model():
    return keras.Sequential(
        [
            keras.Input((4,)),
            layers.Dense(8, name="hidden"),
            layers.Dense(2, name="head"),
        ]
    )


def test_quantized_model_without_lora_warns_that_nothing_is_centralized():
    model = _dense_model()
    model.quantize("int8")
    optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1))
    with pytest.warns(UserWarning, match="centralizes none of its 2 trainable"):
        optimizer.build(model.trainable_variables)
    assert not any(e.centralized for e in optimizer.plan)


def test_quantized_model_with_lora_centralizes_the_factors():
    model = _dense_model()
    model.quantize("int8")
    for layer in model.layers:
        layer.enable_lora(RANK)
    optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer.build(model.trainable_variables)
    centralized = {
        e.path.split("/", 1)[1]: e.axes for e in optimizer.plan if e.centralized
    }
    assert centralized == {
        "hidden/lora_kernel_a": (0,),
        "hidden/lora_kernel_b": (0,),
        "head/lora_kernel_a": (0,),
        "head/lora_kernel_b": (0,),
    }


def test_lora_of_an_embedding_is_left_alone():
    model = keras.Sequential(
        [keras.Input((3,), dtype="int32"), layers.Embedding(10, 4)]
    )
    model.layers[0].enable_lora(RANK)
    assert not any(e.centralized for e in keras_gc.plan(model))


def test_the_drift_example_runs_and_keeps_the_output_first_mean():
    from examples import lora_drift

    build = dict(lora_drift.cases())["EinsumDense abc,dc->abd (out, in)"]
    assert lora_drift.drift(build, use_gc=True, epochs=1) < 1e-6
    assert lora_drift.drift(build, use_gc=False, epochs=1) > 1e-4
