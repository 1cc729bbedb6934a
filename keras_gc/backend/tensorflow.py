"""TensorFlow: the bias gradient's sum on CPU, and one graph call when eager.

Without XLA, TensorFlow's `reduce_mean` over a kernel's leading axes runs far
below the memory bandwidth on CPU. `BiasAddGrad`, the sum TensorFlow takes
for a bias gradient, reduces the same axes at full speed and has an XLA
kernel; `keras.ops` has no way to reach it. On GPUs `reduce_mean` is fast,
and `BiasAddGrad` may sum with atomic adds, whose order (and so the float32
result) changes from run to run, so GPUs keep the reference.

A sparse gradient of a planned kernel is made dense, so that the plan holds
on every backend; it then takes the memory of a dense gradient.

Eagerly, each op is dispatched on its own, and three ops per kernel cost
more than their arithmetic: a list is centralized in one `tf.function` call.

TensorFlow's autograph rewrites the Python a user's `tf.function` calls
unless it is Keras' own; its rewrite of plain loops breaks planning, so the
wrapper's methods are marked `do_not_convert`.

Under `tf.distribute`, the wrapper runs on each replica's gradient, before
the inner optimizer all-reduces it. GC is linear, so that is exact; AGC is
not, so its norms are taken over the replicas' sum (`replica_sum`).
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import tensorflow as tf
from keras import ops

from keras_gc._maths import (
    is_float32_over_leading,
    subtract_each,
    subtract_mean_reference,
)
from keras_gc.backend.generic import clip_unit, overwritable, own_gradients, sums

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

_F = TypeVar("_F", bound=Callable[..., Any])


def do_not_convert(function: _F) -> _F:
    """Keeps autograph from rewriting `function`."""
    return tf.autograph.experimental.do_not_convert(function)


def subtract_mean(gradient: Any, axes: tuple[int, ...]) -> Any:
    """`subtract_mean_reference`, with `BiasAddGrad` for channels-last kernels."""
    gradient = ops.convert_to_tensor(gradient)
    if (
        len(axes) != len(gradient.shape) - 1
        or not is_float32_over_leading(gradient, axes)
        or not sees_no_gpu()
    ):
        return subtract_mean_reference(gradient, axes)
    total = tf.raw_ops.BiasAddGrad(out_backprop=gradient, data_format="NHWC")
    # A plain subtraction can reuse the gradient's buffer; `bias_add` would
    # allocate a new one.
    return gradient - total / math.prod(gradient.shape[:-1])


def subtract_means(
    gradients: Sequence[Any],
    axes: Sequence[tuple[int, ...]],
    in_place: Sequence[bool],
) -> list[Any]:
    """`subtract_mean` on a list: one graph call when eager.

    A sparse gradient (`tf.IndexedSlices`, as `ops.take` on a kernel gives)
    is densified first, as JAX and PyTorch gradients always are.
    """
    gradients = [
        tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
        for g in gradients
    ]
    if gradients and not any(in_place) and tf.executing_eagerly():
        return subtract_means_graph(tuple(axes))(list(gradients))
    return subtract_each(subtract_mean, gradients, axes, in_place)


@functools.cache
def sees_no_gpu() -> bool:
    """Whether TensorFlow runs on CPUs only (its devices are fixed once set up)."""
    return not tf.config.list_logical_devices("GPU")


# One entry per plan in use: a few optimizers at most; an evicted one retraces.
@functools.lru_cache(maxsize=8)
def subtract_means_graph(axes: tuple[tuple[int, ...], ...]) -> Any:
    """`subtract_mean` over a list of gradients, each over its `axes`, as one
    `tf.function` (traced once per list of shapes, as a `fit` step is).

    The axes are bound, not passed: matching a tuple per gradient on every
    call would cost as much as the graph saves.
    """

    def subtract_list(gradients: list[Any]) -> list[Any]:
        return [subtract_mean(g, a) for g, a in zip(gradients, axes, strict=True)]

    return tf.function(subtract_list)


def replica_sum(gradients: Sequence[Any]) -> list[Any]:
    """Each gradient summed over the replicas of a `tf.distribute` step.

    One more all-reduce of the clipped kernels' gradients, in the replica
    context where the inner optimizer takes its own; outside a distributed
    step, the gradients themselves.
    """
    context = tf.distribute.get_replica_context()
    if not gradients or context is None or context.num_replicas_in_sync == 1:
        return list(gradients)
    dense = [
        tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
        for g in gradients
    ]
    return list(context.all_reduce(tf.distribute.ReduceOp.SUM, dense))
