"""The small convolutional model that the plan, saving and composition tests
share: one kernel of each common layout, a conv and a dense head."""

import keras
import numpy as np
from keras import layers


def conv_and_dense(input_shape: tuple[int, ...] = (6, 6, 2)) -> keras.Model:
    """`Conv2D(4, 3)` named "conv", flattened into `Dense(2)` named "head"."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(4, 3, name="conv"),
            layers.Flatten(),
            layers.Dense(2, name="head"),
        ]
    )


def conv_and_dense_data(count: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """`count` random inputs and targets for `conv_and_dense()`."""
    rng = np.random.default_rng(0)
    return rng.random((count, 6, 6, 2), "float32"), rng.random((count, 2), "float32")
