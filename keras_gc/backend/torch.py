"""PyTorch: native means, grouped, and one `_foreach_sub` per list, in place.

Op by op, a `keras.ops` call costs several times the dispatch of the torch
op it runs (scope, device and dtype checks), more than the arithmetic of a
small kernel; `keras.ops` also has no in-place subtraction and no
`_foreach` ops. So this module takes the means with native ops, averages
small kernels that share a shape as one stack, subtracts every mean in one
`torch._foreach_sub(_)` call, and may overwrite a variable's own `.grad`
as `torch.nn.utils.clip_grad_norm_` does, sparing a new tensor per kernel.
"""

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch

from keras_gc._compat import VARIABLE_VALUE
from keras_gc._maths import subtract_each, subtract_mean_reference
from keras_gc.backend.generic import do_not_convert, replica_sum, sums

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

# Up to this many elements, copying a kernel's gradient into a stack costs
# less than dispatching a mean of its own (measured: docs/performance.md).
STACK_MAX_ELEMENTS = 2**14


def subtract_mean(gradient: Any, axes: tuple[int, ...]) -> Any:
    """`subtract_mean_reference`, in native ops for torch float tensors."""
    if not _is_float_tensor(gradient):
        return subtract_mean_reference(gradient, axes)
    return gradient - _mean(gradient, axes)


def subtract_means(
    gradients: Sequence[Any],
    axes: Sequence[tuple[int, ...]],
    in_place: Sequence[bool],
) -> list[Any]:
    """`subtract_mean` on a list, overwriting the gradients `in_place` marks."""
    gradients = list(gradients)
    if not gradients:  # torch's `_foreach` ops refuse empty lists
        return gradients
    if not all(map(_is_float_tensor, gradients)):
        return subtract_each(subtract_mean, gradients, axes, in_place)
    means = _means(gradients, tuple(axes))
    if all(in_place):
        torch._foreach_sub_(gradients, means)
        return gradients
    if not any(in_place):
        return list(torch._foreach_sub(gradients, means))
    result = gradients
    for overwrite in (True, False):
        chosen = [i for i, flag in enumerate(in_place) if flag is overwrite]
        grads = [gradients[i] for i in chosen]
        chosen_means = [means[i] for i in chosen]
        if overwrite:
            torch._foreach_sub_(grads, chosen_means)
        else:
            grads = torch._foreach_sub(grads, chosen_means)
        for i, gradient in zip(chosen, grads, strict=True):
            result[i] = gradient
    return result


def own_gradients(gradients: Sequence[Any], variables: Sequence[Any]) -> list[bool]:
    """Which gradients are their variable's own `.grad`, as Keras' `fit` passes.

    Those may be overwritten in place; any other tensor may be the caller's.
    """
    return [
        isinstance(g, torch.Tensor)
        and not g.requires_grad
        and g is getattr(getattr(v, VARIABLE_VALUE, None), "grad", None)
        for g, v in zip(gradients, variables, strict=True)
    ]


def overwritable(tensors: Sequence[Any]) -> list[bool]:
    """The torch float tensors: keras_gc made them, so no one else holds them."""
    return [_is_float_tensor(t) and not t.requires_grad for t in tensors]


def _is_float_tensor(gradient: Any) -> bool:
    return isinstance(gradient, torch.Tensor) and gradient.is_floating_point()


def _means(gradients: list[Any], axes: tuple[tuple[int, ...], ...]) -> list[Any]:
    """`_mean` of each gradient; small ones that share a shape, dtype, device
    and axes are averaged together, as one stack."""
    signature = tuple([(g.shape, g.dtype, g.device) for g in gradients])
    # `torch.compile` traces this once per graph; Dynamo cannot see through a
    # cache (it warns of silent incorrectness), and needs none.
    groups = _groups if torch.compiler.is_compiling() else _cached_groups
    means: list[Any] = [None] * len(gradients)
    for members, member_axes in groups(signature, axes):
        if len(members) == 1:
            (i,) = members
            means[i] = _mean(gradients[i], member_axes)
            continue
        stack = torch.stack([gradients[i] for i in members])
        for i, mean in zip(members, _mean(stack, member_axes).unbind(0), strict=True):
            means[i] = mean
    return means


def _groups(
    signature: tuple[tuple[Any, Any, Any], ...], axes: tuple[tuple[int, ...], ...]
) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """(members, axes) per group of gradients averaged together; a stacked
    group's axes are those of its stack."""
    groups: dict[Any, list[int]] = {}
    for i, ((shape, dtype, device), axis) in enumerate(
        zip(signature, axes, strict=True)
    ):
        small = math.prod(shape) <= STACK_MAX_ELEMENTS
        groups.setdefault((shape, dtype, device, axis) if small else i, []).append(i)
    result = []
    for members in groups.values():
        axis = axes[members[0]]
        if len(members) > 1:
            rank = len(signature[members[0]][0])
            axis = tuple(a % rank + 1 for a in axis)
        result.append((tuple(members), axis))
    return tuple(result)


# An eager training loop passes the same shapes every step: group them once.
_cached_groups = functools.lru_cache(maxsize=8)(_groups)


def _mean(gradient: Any, axes: tuple[int, ...]) -> Any:
    """`keras.ops.mean(gradient, axes, keepdims=True)` in native torch ops.

    Like `keras.ops.mean`, it averages float16 and bfloat16 in float32 and
    casts the mean back, so both paths give the same numbers.
    """
    if not axes:  # torch would average over every axis; NumPy over none.
        return gradient
    if gradient.dtype in (torch.float16, torch.bfloat16):
        return torch.mean(gradient.float(), axes, keepdim=True).to(gradient.dtype)
    return torch.mean(gradient, axes, keepdim=True)


def clip_unit(
    gradient: Any,
    weight: Any,
    axes: tuple[int, ...],
    clipping: float,
    eps: float,
    also_centralize: bool,
) -> Any:
    """AGC (then GC) of one torch float gradient in native ops, or `None`.

    The same formula as `keras_gc._clipping.clip_reference`, without the
    dispatch cost of `keras.ops`, which is several times the arithmetic of a
    small kernel.
    """
    weight = getattr(weight, "value", weight)
    if not (_is_float_tensor(gradient) and _is_float_tensor(weight)):
        return None
    wide = gradient.float() if gradient.dtype != torch.float64 else gradient
    norm = torch.linalg.vector_norm(wide, dim=axes, keepdim=True)
    limit = torch.linalg.vector_norm(weight.to(wide.dtype), dim=axes, keepdim=True)
    scale = (limit.clamp_min_(eps).mul_(clipping) / norm.clamp_min_(1e-6)).clamp_max_(1)
    scale = scale.to(gradient.dtype)
    if also_centralize:
        # (g - mean) * scale as one pass over g: g * scale - mean * scale.
        shift = torch.mean(wide, axes, keepdim=True).to(gradient.dtype) * scale
        return torch.addcmul(shift.neg_(), gradient, scale)
    return gradient * scale
