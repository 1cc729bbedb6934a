"""The Gradient Centralization operator, as a pure function of tensors, and
its application to a list of gradients by the layout rules."""

from collections.abc import Sequence
from typing import Any, Unpack

from keras import backend as keras_backend
from keras import ops

from keras_gc import backend
from keras_gc._maths import normalize_axes
from keras_gc._options import OptionsKwargs
from keras_gc._plan import plan


def centralize(gradient: Any, axes: int | Sequence[int]) -> Any:
    """Removes from a gradient its mean over the given axes.

    This is the operator of Gradient Centralization (GC):

    $$
    \\Phi(g) = g - \\operatorname{mean}_{\\text{axes}}(g)
    $$

    where the mean is broadcast back over `axes`. For a kernel, `axes` are
    all the axes except its output axes, so each output unit's gradient has
    zero mean. `centralize` is linear, idempotent and an orthogonal
    projection; it keeps no state, so custom training loops can call it
    directly. It runs the backend's fast path where there is one, and
    `keras.ops` elsewhere; both give the same numbers.

    Args:
        gradient: A tensor of any backend, or a NumPy array.
        axes: Int or sequence of ints, the axes to average over (negative
            values count from the end), each at most once.

    Returns:
        A tensor of the gradient's shape and dtype. The mean of a float16 or
        bfloat16 gradient is accumulated in float32 (as `keras.ops.mean` does on
        every backend), so it cannot overflow.

    Raises:
        TypeError: If the gradient is not of a floating-point dtype (the
            mean of an int or bool tensor is not of its dtype), or `axes` is
            not an int or a sequence of ints.
        ValueError: If an axis is out of range or repeated, or `axes` is empty.

    Examples:
        >>> import numpy as np
        >>> g = np.array([[1.0, 2.0], [3.0, 6.0]], "float32")
        >>> np.asarray(keras_gc.centralize(g, axes=0))
        array([[-1., -2.],
               [ 1.,  2.]], dtype=float32)

    Reference:
        Yong et al., "Gradient Centralization: A New Optimization Technique
        for Deep Neural Networks", ECCV 2020, https://arxiv.org/abs/2004.01461
    """
    if not hasattr(gradient, "shape"):
        gradient = ops.convert_to_tensor(gradient)
    dtype = keras_backend.standardize_dtype(gradient.dtype)
    if not keras_backend.is_float_dtype(dtype):
        raise TypeError(
            "`keras_gc.centralize` needs a floating-point gradient (float16, "
            f"bfloat16, float32 or float64); received {type(gradient).__name__} "
            f"of dtype {dtype}. Cast it first, e.g. `keras.ops.cast(x, "
            '"float32")`.'
        )
    return backend.subtract_mean(gradient, normalize_axes(axes, len(gradient.shape)))


def centralize_gradients(
    gradients: Sequence[Any],
    variables: Sequence[Any],
    **options: Unpack[OptionsKwargs],
) -> list[Any]:
    """Centralizes gradients by the rules `keras_gc.wrap` uses.

    For custom training loops. It plans on every call; in a loop, make the
    plan once with `keras_gc.plan(variables, **options)` and call its
    `centralize(gradients)` instead.

    Args:
        gradients: One gradient (or `None`) per variable.
        variables: The variables the gradients belong to.
        **options: The options of `keras_gc.Options`.

    Returns:
        The list of gradients, clipped (with `agc`) and centralized where the
        rules say so.
    """
    made = plan(variables, **options)
    return made.centralize(made.clip(gradients, variables))
