"""`compare`: trains the two arms of each seed's pair, alike in all but GC."""

import hashlib
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from keras_gc._compat import metric_direction
from keras_gc._optimizer import wrap as gc_wrap
from keras_gc._version import __version__
from keras_gc.comparison.report import ARMS, Comparison, Run, jsonable

__all__ = ["compare"]


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
            the `Batches` of `examples/horse_or_human`.
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

    Examples:
        >>> def build_model():
        ...     return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> x, y = np.ones((8, 4)), np.zeros((8, 1))
        >>> result = compare(build_model, lambda: keras.optimizers.SGD(0.1),
        ...                  (x, y), loss="mse", epochs=2, verbose=0)
        >>> print(result.table())  # doctest: +SKIP
    """
    _check_factories(build_model, make_optimizer)
    _check_reusable(train=train, validation=validation)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(
            f"`seeds` must be a positive count or distinct seeds; received {seeds!r}."
        )
    runs: list[Run] = []
    directions: dict[str, str] = {}
    for i, seed in enumerate(seed_list):
        keras.utils.set_random_seed(seed)
        initial = _built(build_model()).get_weights()
        optimizers = _fresh_optimizers(make_optimizer, wrap)
        for arm in ARMS if i % 2 == 0 else ARMS[::-1]:
            if verbose != 0:
                print(f"Run {len(runs) + 1}/{2 * len(seed_list)}: {arm}, seed {seed}")
            run, directions = _fit(
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
            runs.append(run)
    settings = {
        "arms": list(ARMS),
        "seeds": seed_list,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "validation_steps": validation_steps,
        "optimizer": _describe(make_optimizer()),
        "gc_optimizer": _describe(wrap(make_optimizer())),
        "directions": directions,
    }
    runs.sort(key=lambda run: (seed_list.index(run.seed), ARMS.index(run.arm)))
    return Comparison(
        tuple(runs), jsonable(_environment() | settings | dict(metadata or {}))
    )


def _check_factories(build_model: Any, make_optimizer: Any) -> None:
    """Each arm needs its own model and optimizer: refuses a built one."""
    for name, given, example in (
        ("build_model", build_model, "def build_model(): return keras.Sequential(...)"),
        ("make_optimizer", make_optimizer, "lambda: keras.optimizers.RMSprop(1e-4)"),
    ):
        # A Keras model is callable, so `callable` alone would not tell.
        if isinstance(given, keras.layers.Layer | keras.optimizers.Optimizer) or (
            not callable(given)
        ):
            raise TypeError(
                f"`{name}` must be a function that returns a new one for every "
                f"run (e.g. `{example}`); received {type(given).__name__} "
                f"{given!r}."
            )


def _check_reusable(**data: Data) -> None:
    """Refuses data that one run would use up, leaving the next run nothing."""
    for name, given in data.items():
        if isinstance(given, Iterator):
            raise TypeError(
                f"`{name}` is a one-shot iterator ({type(given).__name__}): the "
                "first run would use it up and the next would find it empty. "
                "Pass data that can be iterated afresh (arrays, a "
                "`keras.utils.PyDataset`, a `tf.data.Dataset`), or a function "
                "of the seed that returns a new iterator each time, e.g. "
                f"`{name}=lambda seed: make_batches(seed)`."
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
) -> tuple[Run, dict[str, str]]:
    """Trains a fresh model from `initial` weights.

    Returns:
        Its `Run`, and `_directions` of its compiled metrics.
    """
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
    # Keras warns that it cannot shuffle an endless `PyDataset` or an
    # iterator; such data (like `Batches(shuffle=True)`) draws its own order.
    endless = isinstance(data, keras.utils.PyDataset) and data.num_batches is None
    history = model.fit(
        *(data if isinstance(data, tuple) else (data,)),
        shuffle=not (endless or isinstance(data, Iterator)),
        validation_data=validation(seed) if callable(validation) else validation,
        callbacks=[clock],
        **fit_kwargs,
    )
    total = time.perf_counter() - start
    run = Run(
        arm=arm,
        seed=seed,
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        epoch_seconds=clock.epoch_seconds,
        total_seconds=total,
        initial_weights_sha256=initial_sha256,
    )
    return run, _directions(model)


def _directions(model: keras.Model) -> dict[str, str]:
    """Says whether each compiled metric is better `"up"` or `"down"`.

    Read as Keras' `EarlyStopping` reads it: the loss goes down, and a metric
    says its own direction (accuracy, AUC, ... up; errors down).
    """
    directions = {"loss": "down"}
    pending = list(model.metrics)
    while pending:
        metric = pending.pop()
        # The compiled metrics nest their metrics (`CompileMetrics`, lists).
        pending.extend(getattr(metric, "metrics", []))
        direction = metric_direction(metric)
        if direction is not None:
            directions[metric.name] = direction
    return directions
