"""JAX: a matrix kernel's mean as one contraction with ones, under jit.

XLA on CPU splits `keras.ops.mean` over a matrix's first axis into two
kernels; the same sum taken as a contraction with ones (still
`keras.ops.tensordot`) is a single dot. Convolution kernels keep the mean:
XLA writes their gradient in the layout of the backward convolution, which
a reduction reads as it is but a dot first copies into row-major order, one
more read and write of the whole kernel. Two things need JAX itself: telling
a traced call from an eager one (op by op, one reduction dispatches faster
than the contraction's ops), and asking for full float32 precision, since
GPUs and TPUs would otherwise take the dot in TF32 or bfloat16.
"""

from collections.abc import Sequence
from typing import Any

import jax
from keras import ops

from keras_gc._maths import (
    is_float32_over_leading,
    subtract_each,
    subtract_mean_reference,
)
from keras_gc.backend.generic import (
    clip_unit,
    do_not_convert,
    overwritable,
    own_gradients,
    replica_sum,
)
from keras_gc.backend.generic import sums as sums_reference

__all__ = [
    "clip_unit",
    "do_not_convert",
    "overwritable",
    "own_gradients",
    "replica_sum",
    "subtract_mean",
    "subtract_means",
    "sums",
]


def subtract_mean(gradient: Any, axes: tuple[int, ...]) -> Any:
    """`subtract_mean_reference`, with the contraction for traced matrices."""
    gradient = ops.convert_to_tensor(gradient)
    if (
        not isinstance(gradient, jax.core.Tracer)
        or len(gradient.shape) != 2
        or not is_float32_over_leading(gradient, axes)
    ):
        return subtract_mean_reference(gradient, axes)
    rows = gradient.shape[0]
    with jax.default_matmul_precision("highest"):
        total = ops.tensordot(ops.ones((rows,), "float32"), gradient, axes=1)
    return gradient - ops.reshape(total / rows, (1, -1))


def subtract_means(
    gradients: Sequence[Any],
    axes: Sequence[tuple[int, ...]],
    in_place: Sequence[bool],
) -> list[Any]:
    """`subtract_mean` on a list; JAX arrays cannot be overwritten."""
    return subtract_each(subtract_mean, gradients, axes, in_place)


def sums(x: Any, axes: tuple[int, ...]) -> tuple[Any, Any]:
    """`generic.sums`; traced, as one variadic reduction, so that XLA reads
    `x` once for both (as two reductions it reads it twice)."""
    if not isinstance(x, jax.core.Tracer):
        return sums_reference(x, axes)
    x = ops.cast(x, "float32") if x.dtype != jax.numpy.float64 else x
    zero = jax.numpy.zeros((), x.dtype)
    total, squares = jax.lax.reduce(
        (x, x * x), (zero, zero), lambda a, b: (a[0] + b[0], a[1] + b[1]), axes
    )
    kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    return ops.reshape(total, kept), ops.reshape(squares, kept)
