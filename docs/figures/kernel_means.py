"""Draws docs/figures/kernel_means.png: how far each kernel's per-output mean
moves from where it started, over a real `fit`, with SGD and with
`keras_gc.wrap(SGD)`. Deterministic; run with any backend:

    KERAS_BACKEND=jax python docs/figures/kernel_means.py [OUTPUT.png]

`nox -s docs` draws it into the built site, so the committed drawing is not
rewritten by every build (its bytes vary with the versions of the libraries).
"""

import sys
from pathlib import Path

import keras
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import keras_gc

STEPS = 60


def make_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(1, name="head"),
        ]
    )


class _Drift(keras.callbacks.Callback):
    """Records, after each step, the largest move of a kernel's per-output mean."""

    def __init__(self, axes: dict[str, tuple[int, ...]]) -> None:
        super().__init__()
        self.axes = axes
        self.drift: list[float] = []

    def _means(self) -> dict[str, np.ndarray]:
        return {
            v.path: keras.ops.convert_to_numpy(v).mean(axis=self.axes[v.path])
            for v in self.model.trainable_variables
            if v.path in self.axes
        }

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = self._means()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = self._means()
        self.drift.append(max(np.abs(now[p] - self.start[p]).max() for p in now))


def run(gc: bool, x: np.ndarray, y: np.ndarray) -> list[float]:
    keras.utils.set_random_seed(0)
    model = make_model()
    sgd = keras.optimizers.SGD(0.05, momentum=0.9)
    optimizer = keras_gc.wrap(sgd) if gc else sgd
    model.compile(optimizer=optimizer, loss="mse")
    axes = {e.path: e.axes for e in keras_gc.plan(model) if e.centralized}
    drift = _Drift(axes)
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=STEPS * 16 // len(x),
        shuffle=False,
        verbose=0,
        callbacks=[drift],
    )
    return drift.drift


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((160, 16, 16, 3), "float32")
    y = x.mean(axis=(1, 2, 3))[:, None] * 4 - 2
    figure = Figure(figsize=(6, 3.2), layout="constrained")
    axes = figure.add_subplot()
    for gc, label in ((False, "SGD"), (True, "keras_gc.wrap(SGD)")):
        # A floor keeps exact zeros visible on the log scale.
        axes.plot(np.maximum(run(gc, x, y), 1e-9), label=label)
    axes.set_yscale("log")
    axes.set_xlabel("training step")
    axes.set_ylabel("largest move of a per-output\nkernel mean since the start")
    axes.legend()
    path = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_suffix(".png")
    )
    FigureCanvasAgg(figure).print_png(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
