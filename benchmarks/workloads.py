"""The benchmark's workloads, optimizers and execution modes, and how a step runs."""

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

import keras_gc
from examples.horse_or_human.model import build_model

BACKEND = keras.backend.backend()
WORKLOADS = ("hoh", "dense60", "resnet50")
OPTIMIZERS = ("rmsprop", "adam", "sgdm")
# Execution modes: how the training step runs.
MODES = {
    "jax": ("jit", "eager"),
    "tensorflow": ("graph", "jit", "eager"),
    "torch": ("eager", "jit"),
}[BACKEND]
MODE_HELP = {
    "jit": "jit_compile=True (XLA on JAX and TensorFlow, torch.compile on torch)",
    "graph": "tf.function without XLA (TensorFlow's default on CPU)",
    "eager": "run_eagerly=True (torch: jit_compile=False)",
}
LEARNING_RATE = 1e-4

Workload = tuple[Callable[[], keras.Model], np.ndarray, np.ndarray, str]


def horse_or_human_cnn(size: int) -> keras.Sequential:
    """The classic horse-or-human CNN on `size` x `size` RGB inputs, without
    the random augmentation, so that only the optimizer moves the weights."""
    return build_model(size, augment=False)


def dense_stack(depth: int = 60, width: int = 64, classes: int = 10) -> keras.Model:
    """`depth` `Dense(width, relu)` layers and a `Dense(classes)` head."""
    layers = [
        keras.layers.Dense(width, activation="relu", kernel_initializer="he_normal")
        for _ in range(depth)
    ]
    return keras.Sequential(
        [keras.Input((width,)), *layers, keras.layers.Dense(classes)]
    )


def build_workload(name: str, args: argparse.Namespace) -> Workload:
    """Returns a model builder, one batch (x, y) and the loss of a workload.

    Args:
        name: One of `WORKLOADS`.
        args: The command line; `hoh_size`, `hoh_batch`, `resnet_size` and
            `resnet_batch` size the images and batches.

    Returns:
        `(build, x, y, loss)`: `build()` makes a fresh model.
    """
    rng = np.random.default_rng(0)
    if name == "hoh":
        size = args.hoh_size
        x = rng.random((args.hoh_batch, size, size, 3), dtype="float32")
        y = rng.integers(0, 2, (args.hoh_batch, 1)).astype("float32")
        return lambda: horse_or_human_cnn(size), x, y, "binary_crossentropy"
    if name == "dense60":
        x = rng.standard_normal((32, 64), dtype="float32")
        y = rng.integers(0, 10, (32,))
        return dense_stack, x, y, "sparse_categorical_crossentropy_logits"
    if name == "resnet50":
        size = args.resnet_size
        x = rng.random((args.resnet_batch, size, size, 3), dtype="float32")
        y = rng.integers(0, 10, (args.resnet_batch,))

        def build() -> keras.Model:
            return keras.applications.ResNet50(
                weights=None, input_shape=(size, size, 3), classes=10
            )

        return build, x, y, "sparse_categorical_crossentropy"
    raise ValueError(f"Unknown workload {name!r}; expected one of {WORKLOADS}.")


def make_loss(name: str) -> Any:
    """The Keras loss a workload names."""
    if name == "sparse_categorical_crossentropy_logits":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return name


def make_optimizer(name: str) -> keras.optimizers.Optimizer:
    """A fresh bare Keras optimizer, one of `OPTIMIZERS`."""
    if name == "rmsprop":
        return keras.optimizers.RMSprop(LEARNING_RATE)
    if name == "adam":
        return keras.optimizers.Adam(LEARNING_RATE)
    if name == "sgdm":
        return keras.optimizers.SGD(LEARNING_RATE, momentum=0.9)
    raise ValueError(f"Unknown optimizer {name!r}; expected one of {OPTIMIZERS}.")


def twin_models(build: Callable[[], keras.Model], count: int) -> list[keras.Model]:
    """`count` models with identical weights."""
    keras.utils.set_random_seed(0)
    models = [build() for _ in range(count)]
    for model in models[1:]:
        model.set_weights(models[0].get_weights())
    return models


def compile_arm(
    model: keras.Model, optimizer_name: str, mode: str, gc: bool, loss: str
) -> None:
    """Compiles `model` with the bare optimizer, or with it wrapped in GC."""
    optimizer = make_optimizer(optimizer_name)
    if gc:
        optimizer = keras_gc.wrap(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=make_loss(loss),
        jit_compile=mode == "jit",
        run_eagerly=mode == "eager" and BACKEND != "torch",
    )


def step_runner(
    model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int, how: str
) -> Callable[[], None]:
    """A function that runs `steps` training steps and waits for them."""
    if how == "train_on_batch":

        def run() -> None:
            for _ in range(steps):
                model.train_on_batch(x, y)

        return run
    xs = np.concatenate([x] * steps)
    ys = np.concatenate([y] * steps)
    batch = len(x)

    def run_fit() -> None:
        model.fit(xs, ys, batch_size=batch, epochs=1, shuffle=False, verbose=0)

    return run_fit


def steps_for(workload: str, args: argparse.Namespace, mode: str = "") -> int:
    """Training steps per timed round, before `fit`'s calibration."""
    if args.steps:
        return args.steps
    base = {"hoh": 3, "dense60": 40, "resnet50": 3}[workload]
    if mode == "eager" and BACKEND != "torch":
        base = max(1, base // 4)  # eager JAX and TensorFlow steps are long
    return base if args.quick else base * 3


def count_variables(variables: Sequence[Any]) -> dict[str, int]:
    """How many variables, and their bytes."""
    size = sum(
        math.prod(v.shape) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
        for v in variables
    )
    return {"count": len(variables), "bytes": int(size)}
