"""The Gradient Centralization operator, as a pure function of one tensor."""

from collections.abc import Sequence
from typing import Any

from keras import ops


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
    if not isinstance(axes, int):
        axes = tuple(axes)
    gradient = ops.convert_to_tensor(gradient)
    return gradient - ops.mean(gradient, axis=axes, keepdims=True)
