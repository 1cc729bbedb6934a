"""Checks an installed keras-gc wheel, run by `nox -s build` outside the repository.

Wraps an optimizer, fits two steps, saves, loads and takes a third step, which must
equal three uninterrupted steps from the same start.
"""

import os
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

import keras_gc


def main() -> None:
    installed = Path(keras_gc.__file__).parent
    assert "site-packages" in installed.parts, f"keras_gc comes from {installed}"
    assert (installed / "py.typed").exists(), "py.typed is missing"
    rng = np.random.default_rng(0)
    x = rng.random((16, 6, 6, 2), "float32")
    y = rng.random((16, 3), "float32")

    def model() -> keras.Model:
        keras.utils.set_random_seed(0)
        net = keras.Sequential(
            [
                keras.Input((6, 6, 2)),
                keras.layers.Conv2D(4, 3),
                keras.layers.Flatten(),
                keras.layers.Dense(3),
            ]
        )
        net.compile(optimizer=keras_gc.optimizers.Adam(0.01, mode="update"), loss="mse")
        return net

    resumed = model()
    for _ in range(2):
        resumed.train_on_batch(x, y)
    path = os.path.join(tempfile.mkdtemp(), "smoke.keras")
    resumed.save(path)
    resumed = keras.saving.load_model(path)
    assert isinstance(resumed.optimizer, keras_gc.GradientCentralizationOptimizer)
    resumed.train_on_batch(x, y)
    straight = model()
    for _ in range(3):
        straight.train_on_batch(x, y)
    for a, b in zip(resumed.get_weights(), straight.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    print(f"keras-gc {keras_gc.__version__} wheel OK on {keras.backend.backend()}")


if __name__ == "__main__":
    sys.exit(main())
