"""The fast path of the backend Keras runs on, chosen once at import.

Keras picks its optimizer class per backend the same way, with a static
`if`/`elif` import (`keras/src/optimizers/optimizer.py`). Each module provides
what `Backend` names; mypy checks every one of them against it. A backend
without a module of its own runs `keras_gc.backend.generic`, the `keras.ops`
reference.
"""

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import keras

_F = TypeVar("_F", bound=Callable[..., Any])


class Backend(Protocol):
    """What a backend module provides (its functions, as protocol members)."""

    def subtract_mean(self, gradient: Any, axes: tuple[int, ...]) -> Any:
        """One gradient minus its mean over `axes`, axes already checked."""

    def subtract_means(
        self,
        gradients: Sequence[Any],
        axes: Sequence[tuple[int, ...]],
        in_place: Sequence[bool],
    ) -> list[Any]:
        """`subtract_mean` on a list, each over its axes, overwriting those that
        `in_place` marks where the backend can."""

    def own_gradients(
        self, gradients: Sequence[Any], variables: Sequence[Any]
    ) -> list[bool]:
        """Which gradients GC may overwrite (the variables' own)."""

    def overwritable(self, tensors: Sequence[Any]) -> list[bool]:
        """Which of these tensors, made by keras_gc in this step, may be
        overwritten (torch tensors only)."""

    def do_not_convert(self, function: _F) -> _F:
        """Keeps a tracer (AutoGraph) from rewriting our Python."""

    def sums(self, x: Any, axes: tuple[int, ...]) -> tuple[Any, Any]:
        """The sum of `x` and of its squares over `axes`, kept as size 1."""

    def clip_unit(
        self,
        gradient: Any,
        weight: Any,
        axes: tuple[int, ...],
        clipping: float,
        eps: float,
        also_centralize: bool,
    ) -> Any:
        """AGC (then GC, if asked) of one gradient by a faster path, or `None`
        where the backend has none."""

    def replica_sum(self, gradients: Sequence[Any]) -> list[Any]:
        """Each gradient summed over the replicas of a distributed step, so
        that AGC's norms are those of the all-reduced gradient."""


_implementation: Backend
if keras.backend.backend() == "jax":
    from keras_gc.backend import jax as _jax

    _implementation = _jax
elif keras.backend.backend() == "tensorflow":
    from keras_gc.backend import tensorflow as _tensorflow

    _implementation = _tensorflow
elif keras.backend.backend() == "torch":
    from keras_gc.backend import torch as _torch

    _implementation = _torch
else:
    from keras_gc.backend import generic as _generic

    _implementation = _generic

subtract_mean = _implementation.subtract_mean
subtract_means = _implementation.subtract_means
own_gradients = _implementation.own_gradients
overwritable = _implementation.overwritable
do_not_convert = _implementation.do_not_convert
sums = _implementation.sums
clip_unit = _implementation.clip_unit
replica_sum = _implementation.replica_sum

__all__ = [
    "Backend",
    "clip_unit",
    "do_not_convert",
    "overwritable",
    "own_gradients",
    "replica_sum",
    "subtract_mean",
    "subtract_means",
    "sums",
]
