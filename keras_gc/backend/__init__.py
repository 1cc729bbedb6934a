"""The fast path of the backend Keras runs on, chosen once at import.

Keras picks its optimizer class per backend the same way
(`keras/src/optimizers/optimizer.py`). Each module offers the same four
functions:

- `centralize(gradient, axes)`: one gradient, axes already checked;
- `centralize_all(gradients, axes, in_place)`: a list, each over its axes;
- `own_gradients(gradients, variables)`: which gradients GC may overwrite;
- `do_not_convert(function)`: keeps a tracer from rewriting our Python.

A backend without a module of its own runs `keras_gc.backend.generic`, the
`keras.ops` reference.
"""

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import keras

_BACKEND = keras.backend.backend()
_MODULE = _BACKEND if _BACKEND in ("jax", "tensorflow", "torch") else "generic"
_implementation = importlib.import_module(f"keras_gc.backend.{_MODULE}")

centralize: Callable[[Any, tuple[int, ...]], Any] = _implementation.centralize
centralize_all: Callable[
    [Sequence[Any], Sequence[tuple[int, ...]], Sequence[bool]], list[Any]
] = _implementation.centralize_all
own_gradients: Callable[[Sequence[Any], Sequence[Any]], list[bool]] = (
    _implementation.own_gradients
)
do_not_convert: Callable[[Any], Any] = _implementation.do_not_convert
# AGC's norms are taken over the all-reduced gradient (see each module).
replica_sum: Callable[[Sequence[Any]], list[Any]] = _implementation.replica_sum
sums: Callable[[Any, tuple[int, ...]], tuple[Any, Any]] = _implementation.sums
clip_unit: Callable[..., Any] = _implementation.clip_unit

__all__ = [
    "centralize",
    "centralize_all",
    "clip_unit",
    "do_not_convert",
    "own_gradients",
    "replica_sum",
    "sums",
]
