"""Gradient Centralization in `keras.ops`: the reference every backend follows.

Nothing here knows which backend runs it. The fast paths in
`keras_gc.backend` must give the same numbers, and fall back to these
functions wherever they have no faster way.
"""

import operator
from collections.abc import Callable, Sequence
from typing import Any

from keras import backend, ops


def normalize_axes(
    axes: Any,
    rank: int | None = None,
    *,
    name: str = "`axes`",
    subject: str = "a gradient",
) -> tuple[int, ...]:
    """Checks axes by the one rule every option and function that takes axes follows.

    An axis is an int or a NumPy integer, not a bool; negative axes count from
    the end; a list of axes names at least one axis, each once, each in range.

    Args:
        axes: Int or sequence of ints.
        rank: The rank of the tensor they index, or `None` when it is not
            known yet (an option given before any variable is seen): then
            only the type, emptiness and literal repeats are checked.
        name: How the error names the axes, e.g. "`axes`".
        subject: What the axes index, for the out-of-range error.

    Returns:
        The axes as a tuple of ints: sorted and non-negative when `rank` is
        given, as given otherwise.

    Raises:
        TypeError: If `axes` is not an int or a sequence of ints.
        ValueError: If an axis is out of range or repeated, or none is given.
    """
    items = (axes,) if _is_int(axes) else axes
    if (
        isinstance(items, str | bytes)
        or not isinstance(items, Sequence)
        or not all(_is_int(a) for a in items)
    ):
        raise TypeError(
            f"{name} must be an int or a sequence of ints (NumPy integers too, "
            f"not bools); received {axes!r}."
        )
    if not items:
        raise ValueError(f"{name} is empty: give at least one axis.")
    given = tuple(operator.index(a) for a in items)
    if rank is not None and not all(-rank <= a < rank for a in given):
        raise ValueError(
            f"{name} {given} are out of range for {subject} of rank {rank}; each "
            f"must be in [-{rank}, {rank}). Axes are ints in [-{rank}, {rank}), "
            "negative ones counting from the end."
        )
    normalized = given if rank is None else tuple(sorted(a % rank for a in given))
    if len(set(normalized)) != len(normalized):
        at = "" if rank is None else f" for {subject} of rank {rank}"
        raise ValueError(f"{name} {given} name an axis twice{at}; give each once.")
    return normalized


def _is_int(value: Any) -> bool:
    # bool is an int to Python, but `axes=True` is a mistake.
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def subtract_mean_reference(gradient: Any, axes: tuple[int, ...]) -> Any:
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


def subtract_each(
    subtract_mean: Callable[[Any, tuple[int, ...]], Any],
    gradients: Sequence[Any],
    axes: Sequence[tuple[int, ...]],
    in_place: Sequence[bool],
) -> list[Any]:
    """`subtract_mean` on each gradient of a list, over its own axes, none in place."""
    refuse_in_place(gradients, in_place)
    return [subtract_mean(g, a) for g, a in zip(gradients, axes, strict=True)]


def subtract_means_reference(
    gradients: Sequence[Any],
    axes: Sequence[tuple[int, ...]],
    in_place: Sequence[bool],
) -> list[Any]:
    """`subtract_mean_reference` on a list, each gradient over its own axes."""
    return subtract_each(subtract_mean_reference, gradients, axes, in_place)


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
