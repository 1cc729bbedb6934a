"""A fair, repeated A/B comparison of an optimizer with and without GC.

`compare` trains the same model twice per seed, once with the bare optimizer
and once with it wrapped by `keras_gc.wrap`, and nothing else differs: both
runs start from the same initial weights, see the same batches in the same
order and draw the same augmentation and dropout. Repeating the pair over
several seeds gives each metric's mean and spread and the paired difference
(GC minus bare), which tells a real effect from seed-to-seed noise.
"""

import dataclasses
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_gc._optimizer import wrap as gc_wrap

__all__ = ["ARMS", "Comparison", "Run", "compare"]

ARMS = ("bare", "gc")
"""The two arms: the optimizer as given, and wrapped."""

_DIFFERENCE = "gc - bare"
_TIMES = {
    "total_seconds": "time (s)",
    "first_epoch_seconds": "1st epoch (s)",
    "later_epoch_seconds": "later epochs (s/epoch)",
}


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a comparison.

    Attributes:
        arm: `"bare"` or `"gc"`.
        seed: The seed of the pair this run belongs to.
        history: `History.history` of `fit`: each metric per epoch.
        epoch_seconds: Wall time of each epoch, validation included; the
            first includes compiling the training and evaluation steps.
        total_seconds: Wall time of the whole `fit` call.
        initial_weights_sha256: SHA-256 of the weights `fit` started from.
    """

    arm: str
    seed: int
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    total_seconds: float
    initial_weights_sha256: str

    @property
    def first_epoch_seconds(self) -> float:
        """Wall time of the first epoch, compilation included."""
        return self.epoch_seconds[0]

    @property
    def later_epoch_seconds(self) -> float:
        """Mean wall time of the epochs after the first (NaN if none)."""
        later = self.epoch_seconds[1:]
        return statistics.fmean(later) if later else math.nan

    def measures(self) -> dict[str, float]:
        """Returns the timings and the last epoch's value of every metric."""
        times = {name: float(getattr(self, name)) for name in _TIMES}
        return times | {name: values[-1] for name, values in self.history.items()}

    def to_dict(self) -> dict[str, Any]:
        """Returns the run as JSON-friendly data, derived timings included."""
        return dataclasses.asdict(self) | {
            "first_epoch_seconds": self.first_epoch_seconds,
            "later_epoch_seconds": self.later_epoch_seconds,
            "final": {name: values[-1] for name, values in self.history.items()},
        }


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The runs of `compare`, with their summary, table, JSON and plot.

    Attributes:
        runs: Every run, pair by pair in seed order.
        metadata: The settings, the software versions and whatever the
            caller added (the data's source, for example).
    """

    runs: tuple[Run, ...]
    metadata: dict[str, Any]

    @property
    def seeds(self) -> list[int]:
        """The seeds, in the order they ran."""
        return list(dict.fromkeys(run.seed for run in self.runs))

    def run(self, arm: str, seed: int) -> Run:
        """Returns the run of `arm` (`"bare"` or `"gc"`) for `seed`."""
        for run in self.runs:
            if run.arm == arm and run.seed == seed:
                return run
        raise KeyError(f"No run of arm {arm!r} with seed {seed}.")

    def measure_names(self) -> list[str]:
        """Names of what is measured: timings, then metrics (training first)."""
        metrics = list(self.runs[0].history)
        train = [m for m in metrics if not m.startswith("val_")]
        return [*_TIMES, *train, *(m for m in metrics if m.startswith("val_"))]

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Summarizes each measure over the seeds.

        Returns:
            `{group: {measure: {"mean", "std", "min", "max", "n"}}}` for the
            groups `"bare"`, `"gc"` and `"gc - bare"` (the per-seed paired
            difference). `std` is the sample standard deviation (NaN for one
            seed).
        """
        values: dict[str, dict[str, list[float]]] = {}
        for seed in self.seeds:
            bare = self.run("bare", seed).measures()
            gc = self.run("gc", seed).measures()
            for group, measures in (
                ("bare", bare),
                ("gc", gc),
                (_DIFFERENCE, {k: gc[k] - bare[k] for k in bare}),
            ):
                for name, value in measures.items():
                    values.setdefault(group, {}).setdefault(name, []).append(value)
        return {
            group: {name: _stats(v) for name, v in measures.items()}
            for group, measures in values.items()
        }

    def table(self) -> str:
        """Renders the runs and their summary as a Markdown table.

        One row per run; then, per arm, the mean ± standard deviation over
        the seeds, and the mean ± standard deviation of the paired
        difference (GC minus bare). Times in seconds, metrics to 4 decimals.
        """
        names = self.measure_names()
        header = ["run", "seed", *(_TIMES.get(name, name) for name in names)]
        rows = [
            [
                run.arm,
                str(run.seed),
                *(_number(name, run.measures()[name]) for name in names),
            ]
            for run in self.runs
        ]
        n = len(self.seeds)
        for group, stats in self.summary().items():
            label = "GC minus bare" if group == _DIFFERENCE else group
            rows.append(
                [f"**{label}**", f"mean ± sd, n={n}"]
                + [_spread(name, stats[name]) for name in names]
            )
        lines = [header, ["---"] * len(header), *rows]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Returns everything as JSON-friendly data (NaN becomes `null`)."""
        return _jsonable(
            {
                "metadata": self.metadata,
                "runs": [run.to_dict() for run in self.runs],
                "summary": self.summary(),
            }
        )

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        """Writes `to_dict()` to `path` as JSON and returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def save_table(self, path: str | os.PathLike[str]) -> Path:
        """Writes `table()` to `path` and returns the path."""
        path = Path(path)
        path.write_text(self.table())
        return path

    def save_plot(self, path: str | os.PathLike[str]) -> Path:
        """Plots each metric per epoch, training and validation, both arms.

        With several seeds, a line is the mean over the seeds and the band
        around it spans their minimum and maximum. Needs matplotlib.

        Args:
            path: Where to write the PNG.

        Returns:
            The path.
        """
        figure_class, canvas_class = _matplotlib()
        metrics = [m for m in self.measure_names() if m not in _TIMES]
        panels = [m for m in metrics if not m.startswith("val_")]
        figure = figure_class(figsize=(6 * len(panels), 4.5), layout="constrained")
        for axes, metric in zip(
            figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
        ):
            for arm, colour in zip(ARMS, ("tab:blue", "tab:orange"), strict=True):
                for name, style in ((metric, "-"), (f"val_{metric}", "--")):
                    if name not in metrics:
                        continue
                    curves = np.array(
                        [self.run(arm, s).history[name] for s in self.seeds]
                    )
                    epochs = np.arange(1, curves.shape[1] + 1)
                    kind = "validation" if name.startswith("val_") else "training"
                    axes.plot(
                        epochs,
                        curves.mean(0),
                        style,
                        color=colour,
                        label=f"{arm}, {kind}",
                    )
                    if len(curves) > 1:
                        axes.fill_between(
                            epochs,
                            curves.min(0),
                            curves.max(0),
                            color=colour,
                            alpha=0.15,
                        )
            axes.set(xlabel="epoch", ylabel=metric, title=metric)
            axes.legend()
        figure.suptitle(
            f"With and without Gradient Centralization ({len(self.seeds)} seed(s))"
        )
        canvas_class(figure).print_png(str(path))
        return Path(path)

    def save(
        self, directory: str | os.PathLike[str], *, plot: bool = True
    ) -> dict[str, Path]:
        """Writes `table.md`, `results.json` and (if `plot`) `curves.png`.

        Args:
            directory: The folder to write in; created if needed.
            plot: Whether to write the plot (needs matplotlib).

        Returns:
            `{"table": path, "json": path, "plot": path}` (no `"plot"` if
            `plot=False`).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {
            "table": self.save_table(directory / "table.md"),
            "json": self.save_json(directory / "results.json"),
        }
        if plot:
            paths["plot"] = self.save_plot(directory / "curves.png")
        return paths


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "n": len(values),
    }


def _number(name: str, value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.1f}" if name in _TIMES else f"{value:.4f}"


def _spread(name: str, stats: Mapping[str, float]) -> str:
    mean = _number(name, stats["mean"])
    if math.isnan(stats["std"]):
        return mean
    return f"{mean} ± {_number(name, stats['std'])}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _matplotlib() -> tuple[Any, Any]:
    """Imports matplotlib's figure and Agg canvas (no pyplot, no global state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "Plotting needs matplotlib: `pip install matplotlib` (or "
            "`pip install keras-gc[examples]`), or skip the plot."
        ) from None
    return Figure, FigureCanvasAgg


class _Clock(keras.callbacks.Callback):
    """Records the wall time of each epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch_seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._start)


def _digest(weights: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in weights:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _environment() -> dict[str, Any]:
    from keras_gc import __version__

    backend = keras.backend.backend()
    module = sys.modules.get("tensorflow" if backend == "tensorflow" else backend)
    return {
        "backend": backend,
        "versions": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            "keras_gc": __version__,
            "numpy": np.__version__,
            backend: getattr(module, "__version__", None),
        },
        "platform": platform.platform(),
    }


Data = Any
"""What `model.fit` takes as `x` (a `PyDataset`, a `tf.data.Dataset`, ...) or
a tuple `(x, y)` of arrays, or a function of the seed that returns either."""


def compare(
    build_model: Callable[[], keras.Model],
    make_optimizer: Callable[[], keras.optimizers.Optimizer],
    train: Data,
    validation: Data = None,
    *,
    loss: Any,
    metrics: Sequence[Any] | None = None,
    epochs: int = 1,
    steps_per_epoch: int | None = None,
    validation_steps: int | None = None,
    seeds: int | Sequence[int] = 1,
    wrap: Callable[[keras.optimizers.Optimizer], keras.optimizers.Optimizer] = gc_wrap,
    verbose: int | str = "auto",
    metadata: Mapping[str, Any] | None = None,
) -> Comparison:
    """Trains a model with and without Gradient Centralization, fairly.

    For each seed: builds the model once and keeps its initial weights; then,
    for each arm, seeds every random generator with the seed, builds a fresh
    model, sets those weights, compiles it with a fresh optimizer (wrapped
    by `wrap` in the GC arm) and fits it. So the two runs of a pair differ
    only in the optimizer: same initial weights, same batches in the same
    order, same random augmentation and dropout. The arms alternate which
    goes first from one seed to the next, so warm-up effects on the timings
    do not favour either.

    Args:
        build_model: Returns a new, built (given its input shape), uncompiled
            model, random layers (augmentation, dropout) included.
        make_optimizer: Returns a new optimizer, e.g.
            `lambda: keras.optimizers.RMSprop(1e-4)`.
        train: Training data, or a function of the seed that returns it
            (to vary the data order over seeds). It must give the same
            batches every time it is iterated afresh, e.g. a
            `keras_gc.horse_or_human.Batches`.
        validation: Validation data (or a function of the seed), or `None`.
        loss: The loss, as for `model.compile`.
        metrics: The metrics, as for `model.compile`.
        epochs: Epochs per run.
        steps_per_epoch: Training batches per epoch (`None`: until `train`
            runs out).
        validation_steps: Validation batches per epoch.
        seeds: Number of pairs (seeds `0..n-1`), or the seeds themselves.
        wrap: Turns the bare optimizer into the GC arm's; defaults to
            `keras_gc.wrap`. Pass e.g.
            `functools.partial(keras_gc.wrap, conv_only=True)` to compare a
            variant.
        verbose: Passed to `fit` (0 silences progress bars); also prints a
            line before each run when not 0.
        metadata: Extra JSON-friendly facts to keep with the results.

    Returns:
        A `Comparison`.

    Example:

    >>> def build_model():
    ...     return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> x, y = np.ones((8, 4)), np.zeros((8, 1))
    >>> result = compare(build_model, lambda: keras.optimizers.SGD(0.1),
    ...                  (x, y), loss="mse", epochs=2, verbose=0)
    >>> print(result.table())  # doctest: +SKIP
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(
            f"`seeds` must be a positive count or distinct seeds; received {seeds!r}."
        )
    runs: list[Run] = []
    for i, seed in enumerate(seed_list):
        keras.utils.set_random_seed(seed)
        initial = _built(build_model()).get_weights()
        optimizers = _fresh_optimizers(make_optimizer, wrap)
        for arm in ARMS if i % 2 == 0 else ARMS[::-1]:
            if verbose != 0:
                print(f"Run {len(runs) + 1}/{2 * len(seed_list)}: {arm}, seed {seed}")
            runs.append(
                _fit(
                    arm,
                    seed,
                    build_model,
                    initial,
                    optimizers[arm],
                    train,
                    validation,
                    compile_kwargs={"loss": loss, "metrics": metrics},
                    fit_kwargs={
                        "epochs": epochs,
                        "steps_per_epoch": steps_per_epoch,
                        "validation_steps": validation_steps,
                        "verbose": verbose,
                    },
                )
            )
    settings = {
        "arms": list(ARMS),
        "seeds": seed_list,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "validation_steps": validation_steps,
        "optimizer": _describe(make_optimizer()),
        "gc_optimizer": _describe(wrap(make_optimizer())),
    }
    runs.sort(key=lambda run: (seed_list.index(run.seed), ARMS.index(run.arm)))
    return Comparison(
        tuple(runs), _jsonable(_environment() | settings | dict(metadata or {}))
    )


def _fresh_optimizers(
    make_optimizer: Callable[[], keras.optimizers.Optimizer],
    wrap: Callable[[keras.optimizers.Optimizer], keras.optimizers.Optimizer],
) -> dict[str, keras.optimizers.Optimizer]:
    """Returns each arm's optimizer, after checking they share no state."""
    bare, inner = make_optimizer(), make_optimizer()
    if bare is inner:
        raise ValueError(
            "`make_optimizer` returned the same optimizer twice; it must build a "
            "new one each time, e.g. `lambda: keras.optimizers.RMSprop(1e-4)`."
        )
    return {"bare": bare, "gc": wrap(inner)}


def _describe(optimizer: keras.optimizers.Optimizer) -> Any:
    """Returns the optimizer's config, or its repr when it has none to give."""
    try:
        return keras.optimizers.serialize(optimizer)
    except (ValueError, TypeError, NotImplementedError):
        return repr(optimizer)


def _built(model: keras.Model) -> keras.Model:
    if not model.built or not model.weights:
        raise ValueError(
            "`build_model` must return a built model, so that both arms can "
            "start from the same weights: give it its input shape, e.g. "
            "`keras.Input(shape)` as the first layer of a `keras.Sequential`."
        )
    return model


def _fit(
    arm: str,
    seed: int,
    build_model: Callable[[], keras.Model],
    initial: list[np.ndarray],
    optimizer: keras.optimizers.Optimizer,
    train: Data,
    validation: Data,
    *,
    compile_kwargs: dict[str, Any],
    fit_kwargs: dict[str, Any],
) -> Run:
    """Trains a fresh model from `initial` weights and returns its `Run`."""
    # The same seed before building and fitting gives both arms the same
    # random layers' seeds, data order and shuffling.
    keras.utils.set_random_seed(seed)
    model = _built(build_model())
    model.set_weights(initial)
    model.compile(optimizer=optimizer, **compile_kwargs)
    initial_sha256 = _digest(model.get_weights())
    clock = _Clock()
    start = time.perf_counter()
    data = train(seed) if callable(train) else train
    # Keras warns that it cannot shuffle an endless `PyDataset`; such data
    # (like `Batches(shuffle=True)`) draws its own order.
    endless = isinstance(data, keras.utils.PyDataset) and data.num_batches is None
    history = model.fit(
        *(data if isinstance(data, tuple) else (data,)),
        shuffle=not endless,
        validation_data=validation(seed) if callable(validation) else validation,
        callbacks=[clock],
        **fit_kwargs,
    )
    total = time.perf_counter() - start
    return Run(
        arm=arm,
        seed=seed,
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        epoch_seconds=clock.epoch_seconds,
        total_seconds=total,
        initial_weights_sha256=initial_sha256,
    )
