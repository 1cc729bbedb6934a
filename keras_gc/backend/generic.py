"""The `keras.ops` reference, for backends that need nothing faster."""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from keras import backend, ops

from keras_gc._maths import subtract_mean_reference, subtract_means_reference

subtract_mean = subtract_mean_reference
subtract_means = subtract_means_reference

_F = TypeVar("_F", bound=Callable[..., Any])


def own_gradients(gradients: Sequence[Any], variables: Sequence[Any]) -> list[bool]:
    """No gradient may be overwritten: tensors are immutable here."""
    return [False] * len(gradients)


def overwritable(tensors: Sequence[Any]) -> list[bool]:
    """None: tensors are immutable here."""
    return [False] * len(tensors)


def sums(x: Any, axes: tuple[int, ...]) -> tuple[Any, Any]:
    """The sum of `x` and of its squares over `axes`, kept as size 1."""
    x = ops.convert_to_tensor(x)
    if backend.standardize_dtype(x.dtype) in ("float16", "bfloat16"):
        x = ops.cast(x, "float32")
    return (
        ops.sum(x, axis=axes, keepdims=True),
        ops.sum(ops.square(x), axis=axes, keepdims=True),
    )


def clip_unit(
    gradient: Any,
    weight: Any,
    axes: tuple[int, ...],
    clipping: float,
    eps: float,
    also_centralize: bool,
) -> Any:
    """No faster AGC than `keras_gc._clipping`'s: `None`, use it."""
    return None


def replica_sum(gradients: Sequence[Any]) -> list[Any]:
    """The gradients: outside TensorFlow, a step sees the all-reduced ones."""
    return list(gradients)


def do_not_convert(function: _F) -> _F:
    """Nothing rewrites Python code here."""
    return function
