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
    centralize_each,
    centralize_reference,
    is_float32_over_leading,
)
from keras_gc.backend.generic import do_not_convert, own_gradients, replica_sum

__all__ = [
    "centralize",
    "centralize_all",
    "do_not_convert",
    "own_gradients",
    "replica_sum",
]


def centralize(gradient: Any, axes: tuple[int, ...]) -> Any:
    """`centralize_reference`, with the contraction for traced matrices."""
    gradient = ops.convert_to_tensor(gradient)
    if (
        not isinstance(gradient, jax.core.Tracer)
        or len(gradient.shape) != 2
        or not is_float32_over_leading(gradient, axes)
    ):
        return centralize_reference(gradient, axes)
    rows = gradient.shape[0]
    with jax.default_matmul_precision("highest"):
        total = ops.tensordot(ops.ones((rows,), "float32"), gradient, axes=1)
    return gradient - ops.reshape(total / rows, (1, -1))


def centralize_all(
    gradients: Sequence[Any],
    axes: Sequence[tuple[int, ...]],
    in_place: Sequence[bool],
) -> list[Any]:
    """`centralize` on a list; JAX arrays cannot be overwritten."""
    return centralize_each(centralize, gradients, axes, in_place)
