"""The `keras.ops` reference, for backends that need nothing faster."""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from keras_gc._maths import centralize_all_reference, centralize_reference

centralize = centralize_reference
centralize_all = centralize_all_reference

_F = TypeVar("_F", bound=Callable[..., Any])


def own_gradients(gradients: Sequence[Any], variables: Sequence[Any]) -> list[bool]:
    """No gradient may be overwritten: tensors are immutable here."""
    return [False] * len(gradients)


def replica_sum(gradients: Sequence[Any]) -> list[Any]:
    """The gradients: outside TensorFlow, a step sees the all-reduced ones."""
    return list(gradients)


def do_not_convert(function: _F) -> _F:
    """Nothing rewrites Python code here."""
    return function
