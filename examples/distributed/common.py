"""The model, data and report shared by the three multi-process examples.

Each example sets `KERAS_BACKEND` before importing this module. Every process
builds the same model from the same seed and sees the same global data; which
rows of each global batch it feeds is up to the engine's launcher.
"""

import hashlib
from collections.abc import Sequence

import keras
import numpy as np

GLOBAL_BATCH = 16  # Samples per step, summed over all processes.
EPOCHS = 2  # Of 64 samples: 8 steps.


def make_model() -> keras.Model:
    """A small CNN whose conv and dense kernels GC centralizes; seeded."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((6, 6, 4)),
            keras.layers.Conv2D(8, 3, activation="tanh", name="conv"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(8, activation="tanh", name="hidden"),
            keras.layers.Dense(4, name="head"),
        ]
    )


def make_data() -> tuple[np.ndarray, np.ndarray]:
    """The global training set: 64 inputs and regression targets."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6, 6, 4)).astype("float32")
    y = rng.standard_normal((64, 4)).astype("float32")
    return x, y


def digest(weights: Sequence[np.ndarray]) -> str:
    """A short hash of the weights' bytes: equal on every process in sync."""
    sha = hashlib.sha256()
    for weight in weights:
        sha.update(np.ascontiguousarray(weight, dtype="float32").tobytes())
    return sha.hexdigest()[:16]


def report(process: int, processes: int, loss: float, model: keras.Model) -> None:
    """Prints one line per process; the digests must agree."""
    print(
        f"process {process} of {processes}: loss {loss:.6f}, "
        f"weights {digest(model.get_weights())}",
        flush=True,
    )
