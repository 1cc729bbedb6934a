"""How far LoRA fine-tuning moves each effective kernel's per-output mean.

`layer.enable_lora(rank)` freezes a layer's kernel and trains two factors, `a`
and `b`; the layer then uses `kernel + scale * a @ b`. Gradient Centralization
centralizes each factor along its own axes (see `keras_gc.plan`), so with SGD
it keeps the mean of each factor over the kernel input axes it carries. When
that factor is the zero-initialized `b` (an `EinsumDense` with its output axes
first), the effective kernel's per-output mean cannot move at all. When it is
`a` (Dense, convolutions, MultiHeadAttention query/key/value), the mean moves
with `b`, scaled by `a`'s small initial means.

This script fine-tunes one small model per layout with SGD, with and without
GC, on the same data and seed, and prints the largest change of the effective
kernel's per-output mean over its input axes:

    KERAS_BACKEND=jax python -m examples.lora_drift
"""

import keras
import numpy as np

import keras_gc

RANK = 4


def cases():
    """(name, build) pairs; `build` returns (model, [(lora layer, input axes)])."""

    def dense():
        layer = keras.layers.Dense(16)
        inputs = keras.Input((32,))
        return keras.Model(inputs, layer(inputs)), [(layer, (0,))]

    def einsum_output_first():
        layer = keras.layers.EinsumDense("abc,dc->abd", output_shape=(8, 16))
        inputs = keras.Input((8, 32))
        return keras.Model(inputs, layer(inputs)), [(layer, (1,))]

    def einsum_output_last():
        layer = keras.layers.EinsumDense("abc,cd->abd", output_shape=(8, 16))
        inputs = keras.Input((8, 32))
        return keras.Model(inputs, layer(inputs)), [(layer, (0,))]

    def attention():
        mha = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)
        inputs = keras.Input((8, 32))
        model = keras.Model(inputs, mha(inputs, inputs))
        projections = [(mha.query_dense, (0,)), (mha.key_dense, (0,))]
        projections += [(mha.value_dense, (0,)), (mha.output_dense, (0, 1))]
        return model, projections

    return [
        ("Dense (in, out)", dense),
        ("EinsumDense abc,dc->abd (out, in)", einsum_output_first),
        ("EinsumDense abc,cd->abd (in, out)", einsum_output_last),
        ("MultiHeadAttention q/k/v/out", attention),
    ]


def drift(build, use_gc: bool, seed: int = 0, epochs: int = 3) -> float:
    """Largest change of an effective kernel's mean over its input axes."""
    keras.utils.set_random_seed(seed)
    model, lora_layers = build()
    for layer, _ in lora_layers:
        layer.enable_lora(RANK)

    def means():
        return [
            keras.ops.convert_to_numpy(layer.kernel).mean(axis=axes)
            for layer, axes in lora_layers
        ]

    before = means()
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, *model.input_shape[1:])).astype("float32")
    y = rng.normal(size=(256, *model.output_shape[1:])).astype("float32")
    optimizer = keras.optimizers.SGD(0.05)
    model.compile(
        optimizer=keras_gc.wrap(optimizer) if use_gc else optimizer, loss="mse"
    )
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return max(
        float(np.abs(after - start).max())
        for after, start in zip(means(), before, strict=True)
    )


def main() -> None:
    print(
        f"LoRA rank {RANK}, SGD(0.05), 3 epochs; Keras {keras.__version__} "
        f"on {keras.backend.backend()}"
    )
    print(f"{'layer':36} {'without GC':>12} {'with GC':>12}")
    for name, build in cases():
        plain, centralized = drift(build, False), drift(build, True)
        print(f"{name:36} {plain:12.2e} {centralized:12.2e}")


if __name__ == "__main__":
    main()
