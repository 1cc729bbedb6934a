"""Gradient Centralization in `keras.ops`: the reference every backend follows.

Nothing here knows which backend runs it. The fast paths in
`keras_gc.backend` must give the same numbers, and fall back to these
functions wherever they have no faster way.
"""

import operator
from collections.abc import Callable, Sequence
from typing import Any

from keras import backend, ops


def check_axes(axes: Any, rank: int) -> tuple[int, ...]:
    """Validates the axes of a mean over a tensor of rank `rank`.

    Args:
        axes: Int or sequence of ints, negative values counting from the end.
        rank: The rank of the tensor they index.

    Returns:
        The axes as a sorted tuple of non-negative ints.

    Raises:
        TypeError: If `axes` is not an int or a sequence of ints.
        ValueError: If an axis is out of range or repeated, or none is given.
    """
    items = (axes,) if _is_int(axes) else axes
    if not isinstance(items, Sequence) or not all(_is_int(a) for a in items):
        raise TypeError(
            "`axes` must be an int or a sequence of ints (the axes to average "
            f"over); received {axes!r}."
        )
    if not items:
        raise ValueError(
            "`axes` is empty: a mean over no axis would zero the gradient. Give "
            "the axes to average over, e.g. all but the output axis."
        )
    if not all(-rank <= operator.index(a) < rank for a in items):
        raise ValueError(
            f"`axes` {tuple(items)} are out of range for a gradient of rank {rank}; "
            f"each must be in [-{rank}, {rank})."
        )
    normalized = sorted(operator.index(a) % rank for a in items)
    if len(set(normalized)) != len(normalized):
        raise ValueError(
            f"`axes` {tuple(items)} name an axis twice for a gradient of rank "
            f"{rank}; give each axis once."
        )
    return tuple(normalized)


def _is_int(value: Any) -> bool:
    # bool is an int to Python, but `axes=True` is a mistake.
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def centralize_reference(gradient: Any, axes: tuple[int, ...]) -> Any:
    """`gradient - mean(gradient, axes)`, in `keras.ops` on any backend.

    `keras.ops.mean` accumulates float16 and bfloat16 in float32 on every
    backend, so the mean cannot overflow.
    """
    gradient = ops.convert_to_tensor(gradient)
    return gradient - ops.mean(gradient, axis=axes, keepdims=True)


def refuse_in_place(gradients: Sequence[Any], in_place: Sequence[bool]) -> None:
    """Raises if any gradient is marked to be overwritten.

    Only torch tensors are mutable; elsewhere a request to overwrite is an
    error rather than a copy the caller did not expect.
    """
    for gradient, overwrite in zip(gradients, in_place, strict=True):
        if overwrite:
            raise ValueError(
                "Only PyTorch float tensors can be centralized in place, on "
                f"the torch backend; received a {type(gradient).__name__} "
                f"on the {backend.backend()} backend. Use `in_place=False`."
            )


def centralize_each(
    centralize: Callable[[Any, tuple[int, ...]], Any],
    gradients: Sequence[Any],
    axes: Sequence[tuple[int, ...]],
    in_place: Sequence[bool],
) -> list[Any]:
    """`centralize` on each gradient of a list, over its own axes, none in place."""
    refuse_in_place(gradients, in_place)
    return [centralize(g, a) for g, a in zip(gradients, axes, strict=True)]


def centralize_all_reference(
    gradients: Sequence[Any],
    axes: Sequence[tuple[int, ...]],
    in_place: Sequence[bool],
) -> list[Any]:
    """`centralize_reference` on a list, each gradient over its own axes."""
    return centralize_each(centralize_reference, gradients, axes, in_place)


def is_float32_over_leading(gradient: Any, axes: tuple[int, ...]) -> bool:
    """Whether `axes` are a float32 gradient's first axes, but not all of them.

    Those are a kernel's input axes in Keras' channels-last layouts, the case
    the backends' fast means are written for.
    """
    rank = len(gradient.shape)
    return (
        0 < len(axes) < rank
        and sorted(axis % rank for axis in axes) == list(range(len(axes)))
        and backend.standardize_dtype(gradient.dtype) == "float32"
    )
