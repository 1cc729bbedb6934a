"""JAX: the mean over a kernel's input axes as one contraction, under jit.

XLA on CPU splits `keras.ops.mean` over a kernel's leading axes into two
kernels per variable; the same sum taken as a contraction with ones (still
`keras.ops.tensordot`) is a single dot. Two things need JAX itself: telling a
traced call from an eager one (op by op, one reduction dispatches faster than
the contraction's ops), and asking for full float32 precision, since GPUs and
TPUs would otherwise take the dot in TF32 or bfloat16.
"""

import math
from collections.abc import Sequence
from typing import Any

import jax
from keras import ops

from keras_gc._maths import (
    centralize_each,
    centralize_reference,
    is_float32_over_leading,
)
from keras_gc.backend.generic import do_not_convert, own_gradients

__all__ = ["centralize", "centralize_all", "do_not_convert", "own_gradients"]


def centralize(gradient: Any, axes: tuple[int, ...]) -> Any:
    """`centralize_reference`, with the contraction for traced kernels."""
    gradient = ops.convert_to_tensor(gradient)
    if not isinstance(gradient, jax.core.Tracer) or not is_float32_over_leading(
        gradient, axes
    ):
        return centralize_reference(gradient, axes)
    shape = tuple(gradient.shape)
    count = len(axes)
    # A contraction, not a reshape to 2-D: merging the input axes would make
    # XLA gather a kernel sharded along one of them.
    with jax.default_matmul_precision("highest"):
        total = ops.tensordot(ops.ones(shape[:count], "float32"), gradient, axes=count)
    mean = ops.reshape(total / math.prod(shape[:count]), (1,) * count + shape[count:])
    return gradient - mean


def centralize_all(
    gradients: Sequence[Any],
    axes: Sequence[tuple[int, ...]],
    in_place: Sequence[bool],
) -> list[Any]:
    """`centralize` on a list; JAX arrays cannot be overwritten."""
    return centralize_each(centralize, gradients, axes, in_place)
