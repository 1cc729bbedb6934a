"""AGC and GC on a CNN without batch normalization, at a large learning rate.

A small CNN (no normalization layer) learns a synthetic 4-class image task
with SGD and momentum at a learning rate where plain training struggles.
`keras_gc.compare` trains each arm against the bare optimizer with paired
seeds (same initial weights, same batches): AGC alone, GC alone, AGC then GC.

    KERAS_BACKEND=jax python examples/agc_without_batchnorm.py [--seeds 5]
"""

import argparse
import functools
import math

import keras
import numpy as np

import keras_gc

ARMS = {
    "AGC": {"gc": False, "agc": 0.01},
    "GC": {},
    "AGC+GC": {"agc": 0.01},
}


def images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16 RGB noise with one of four bright quadrants: the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, count)
    x = rng.normal(0.0, 1.0, (count, 16, 16, 3)).astype("float32")
    for i, label in enumerate(y):
        row, col = divmod(int(label), 2)
        x[i, row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] += 0.6
    return x, y.astype("int32")


def build_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(4),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    args = parser.parse_args()
    train, validation = images(2048, 0), images(512, 1)
    for arm in args.arms:
        options = ARMS[arm]
        result = keras_gc.compare(
            build_model,
            lambda: keras.optimizers.SGD(args.learning_rate, momentum=0.9),
            train,
            validation,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            epochs=args.epochs,
            seeds=args.seeds,
            wrap=functools.partial(keras_gc.wrap, **options),
            verbose=0,
        )
        print(f"## bare vs {arm} ({options}); the table calls the wrapped arm 'gc'")
        for name in ("bare", "gc"):
            finals = [result.run(name, s).measures() for s in result.seeds]
            print(
                name,
                "val_accuracy per seed:",
                [f"{m['val_accuracy']:.3f}" for m in finals],
            )
        if all(math.isfinite(v) for r in result.runs for v in r.measures().values()):
            print(result.table())
            for line in result.verdict_lines():
                print(line)
        else:
            # A diverged run (NaN loss) has no paired interval.
            print("some runs diverged (NaN): no verdict")


if __name__ == "__main__":
    main()
