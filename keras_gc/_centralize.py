"""The Gradient Centralization operator, as a pure function of tensors."""

import functools
import math
import sys
from collections.abc import Sequence
from typing import Any

from keras import backend, ops


def centralize(gradient: Any, axes: int | Sequence[int]) -> Any:
    """Removes from a gradient its mean over the given axes.

    This is the operator of Gradient Centralization (GC):

    .. math::

        \\Phi(g) = g - \\operatorname{mean}_{axes}(g)

    where the mean is broadcast back over `axes`. For a kernel, `axes` are
    all the axes except its output axes, so each output unit's gradient has
    zero mean. `centralize` is linear, idempotent and an orthogonal
    projection; it keeps no state, so custom training loops can call it
    directly.

    Args:
        gradient: A tensor of any backend, or a NumPy array.
        axes: Int or sequence of ints, the axes to average over (negative
            values count from the end), as for `keras.ops.mean`.

    Returns:
        A tensor of the gradient's shape and dtype. The mean of a float16 or
        bfloat16 gradient is accumulated in float32 (as `keras.ops.mean` does on
        every backend), so it cannot overflow.

    Example:

    >>> import numpy as np
    >>> g = np.array([[1.0, 2.0], [3.0, 6.0]], "float32")
    >>> np.asarray(keras_gc.centralize(g, axes=0))
    array([[-1., -2.],
           [ 1.,  2.]], dtype=float32)

    Reference:
        Yong et al., "Gradient Centralization: A New Optimization Technique
        for Deep Neural Networks", ECCV 2020, https://arxiv.org/abs/2004.01461
    """
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    if _is_torch_float(gradient):
        return gradient - _torch_mean(gradient, axes)
    gradient = ops.convert_to_tensor(gradient)
    if backend.backend() == "jax":
        return gradient - _jax_mean(gradient, axes)
    if (
        backend.backend() == "tensorflow"
        and _float32_over_leading(gradient, axes)
        and len(axes) == len(gradient.shape) - 1
        and _tf_sees_no_gpu()
    ):
        return gradient - _tf_mean_channels_last(gradient)
    return gradient - ops.mean(gradient, axis=axes, keepdims=True)


def centralize_all(
    gradients: Sequence[Any],
    axes: Sequence[tuple[int, ...]],
    in_place: Sequence[bool],
) -> list[Any]:
    """`centralize` on a list of gradients, each over its own axes.

    Op by op, dispatch alone costs more than the arithmetic of a small
    kernel. On torch, it takes the means with native ops, one per group of
    small same-shaped kernels, and subtracts them in one
    `torch._foreach_sub(_)` call per kind (0.25 ms against 0.41 ms one by one
    for sixty 64x64 kernels, on one CPU thread); eager TensorFlow runs the
    whole list as one graph call (1.4 ms against 5.5 ms).

    A gradient marked `in_place` is overwritten on torch (like
    `torch.nn.utils.clip_grad_norm_` does), which spares allocating a new
    tensor of its size: on a CPU that allocation, page faults and all, costs
    ten times the subtraction.

    Args:
        gradients: Gradients that `centralize` accepts.
        axes: The axes to average over for each gradient.
        in_place: For each gradient, whether to overwrite it; only torch
            float tensors can be.

    Returns:
        The centralized gradients, in order.
    """
    if not gradients or not all(_is_torch_float(g) for g in gradients):
        for gradient, overwrite in zip(gradients, in_place, strict=True):
            if overwrite:
                raise ValueError(
                    "Only PyTorch float tensors can be centralized in place, on "
                    f"the torch backend; received a {type(gradient).__name__} "
                    f"on the {backend.backend()} backend. Use `in_place=False`."
                )
        if backend.backend() == "tensorflow" and _tf_executing_eagerly():
            return _tf_graph_centralize_all(tuple(axes))(list(gradients))
        return [centralize(g, a) for g, a in zip(gradients, axes, strict=True)]
    import torch

    means = _torch_means(gradients, axes)
    result = list(gradients)
    for overwrite in (True, False):
        chosen = [i for i, flag in enumerate(in_place) if flag is overwrite]
        if not chosen:
            continue
        grads = [gradients[i] for i in chosen]
        chosen_means = [means[i] for i in chosen]
        if overwrite:
            torch._foreach_sub_(grads, chosen_means)
        else:
            grads = torch._foreach_sub(grads, chosen_means)
        for i, gradient in zip(chosen, grads, strict=True):
            result[i] = gradient
    return result


def _is_torch_float(gradient: Any) -> bool:
    torch = sys.modules.get("torch")
    return (
        torch is not None
        and backend.backend() == "torch"
        and isinstance(gradient, torch.Tensor)
        and gradient.is_floating_point()
    )


# Up to this many elements (64 KiB of float32), copying a kernel's gradient
# into a stack costs less than dispatching a mean of its own: for twenty
# kernels on one CPU thread, 88 us against 117 us at this size, 267 against
# 181 us at four times it.
_STACK_MAX_ELEMENTS = 2**14


def _torch_means(
    gradients: Sequence[Any], axes: Sequence[tuple[int, ...]]
) -> list[Any]:
    """`_torch_mean` of each gradient; small ones that share a shape, dtype,
    device and axes are averaged together, as one stack."""
    import torch

    groups: dict[Any, list[int]] = {}
    for i, (gradient, axis) in enumerate(zip(gradients, axes, strict=True)):
        if gradient.numel() > _STACK_MAX_ELEMENTS:
            groups[i] = [i]
            continue
        key = (gradient.shape, gradient.dtype, gradient.device, axis)
        groups.setdefault(key, []).append(i)
    means: list[Any] = [None] * len(gradients)
    for members in groups.values():
        if len(members) == 1:
            (i,) = members
            means[i] = _torch_mean(gradients[i], axes[i])
            continue
        stack = torch.stack([gradients[i] for i in members])
        rank = stack.dim() - 1
        stacked_axes = tuple(a % rank + 1 for a in axes[members[0]])
        for i, mean in zip(
            members, _torch_mean(stack, stacked_axes).unbind(0), strict=True
        ):
            means[i] = mean
    return means


def _torch_mean(gradient: Any, axes: tuple[int, ...]) -> Any:
    """`keras.ops.mean(gradient, axes, keepdims=True)` in native torch ops.

    Like `keras.ops.mean`, it averages float16 and bfloat16 in float32 and
    casts the mean back, so both paths give the same numbers.
    """
    import torch

    if not axes:  # torch would average over every axis; NumPy over none.
        return gradient
    if gradient.dtype in (torch.float16, torch.bfloat16):
        return torch.mean(gradient.float(), axes, keepdim=True).to(gradient.dtype)
    return torch.mean(gradient, axes, keepdim=True)


def _float32_over_leading(gradient: Any, axes: tuple[int, ...]) -> bool:
    """Whether `axes` are a float32 gradient's first axes, but not all of them
    (a kernel's inputs, in Keras' channels-last layouts)."""
    rank = len(gradient.shape)
    return (
        0 < len(axes) < rank
        and sorted(axis % rank for axis in axes) == list(range(len(axes)))
        and backend.standardize_dtype(gradient.dtype) == "float32"
    )


@functools.cache
def _tf_sees_no_gpu() -> bool:
    """Whether TensorFlow runs on CPUs only (its devices are fixed once set up).

    On GPUs, `reduce_mean` is fast, and `BiasAddGrad` may sum with atomic
    adds, whose order (and so the float32 result) changes from run to run.
    """
    import tensorflow as tf

    return not tf.config.list_logical_devices("GPU")


def _tf_executing_eagerly() -> bool:
    import tensorflow as tf

    return tf.executing_eagerly()


# One entry per plan in use: a few optimizers at most; an evicted one retraces.
@functools.lru_cache(maxsize=8)
def _tf_graph_centralize_all(axes: tuple[tuple[int, ...], ...]) -> Any:
    """`centralize` over a list of gradients, each over its `axes`, as one
    `tf.function` (traced once per list of shapes, as a `fit` step is).

    The axes are bound, not passed: matching a tuple per gradient on every
    call cost as much as the graph saved.
    """
    import tensorflow as tf

    def centralize_list(gradients: list[Any]) -> list[Any]:
        return [centralize(g, a) for g, a in zip(gradients, axes, strict=True)]

    return tf.function(centralize_list)


def _tf_mean_channels_last(gradient: Any) -> Any:
    """`keras.ops.mean` over all axes but the last, in TensorFlow's bias op.

    Without XLA, TensorFlow's `reduce_mean` over a kernel's leading axes runs
    at a fifth of the memory bandwidth on CPU (34 ms against 7 ms for a 160
    MB Dense kernel, on one thread): GC cost a tenth of a horse-or-human step.
    `BiasAddGrad`, the sum TensorFlow takes for a bias gradient, reduces the
    same axes at full speed, and has an XLA kernel. The subtraction stays a
    plain one, which TensorFlow can run in the gradient's own buffer;
    `bias_add` would allocate a new one.
    """
    import tensorflow as tf

    total = tf.raw_ops.BiasAddGrad(out_backprop=gradient, data_format="NHWC")
    return total / math.prod(gradient.shape[:-1])


def _jax_mean(gradient: Any, axes: tuple[int, ...]) -> Any:
    """`keras.ops.mean(gradient, axes, keepdims=True)`, as one kernel under XLA.

    XLA on CPU splits a mean over a kernel's leading axes (its inputs) into
    two kernels per variable, which costs a 60-layer MLP's step 10-20%. The
    same sum taken as a contraction with ones is a single dot. It runs
    at "highest" precision, so GPUs and TPUs sum in float32 rather than
    TF32 or bfloat16. Other axes, float16/bfloat16 gradients (whose mean
    `keras.ops.mean` takes in float32), and eager calls keep `keras.ops.mean`:
    op by op, one reduction dispatches faster than the four ops of the dot
    (2.4 ms against 15.7 ms for sixty 64x64 kernels on CPU).
    """
    import jax

    eager = not isinstance(gradient, jax.core.Tracer)
    if eager or not _float32_over_leading(gradient, axes):
        return ops.mean(gradient, axis=axes, keepdims=True)
    shape = tuple(gradient.shape)
    count = len(axes)
    # A contraction, not a reshape to 2-D: merging the input axes would make
    # XLA gather a kernel sharded along one of them.
    with jax.default_matmul_precision("highest"):
        total = ops.tensordot(ops.ones(shape[:count], "float32"), gradient, axes=count)
    return ops.reshape(total / math.prod(shape[:count]), (1,) * count + shape[count:])
