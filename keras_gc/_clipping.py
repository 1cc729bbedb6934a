"""Adaptive gradient clipping (AGC) in `keras.ops`, as pure functions.

Nothing here knows which backend runs it; under JAX and TensorFlow graphs
the few ops per kernel are fused with the rest of the step.
"""

import math
from collections.abc import Sequence
from typing import Any

from keras import ops
from keras.backend import standardize_dtype

from keras_gc import backend
from keras_gc._maths import normalize_axes

# A gradient norm below this is not divided by: as in NFNets and optax.
_MIN_GRADIENT_NORM = 1e-6


def adaptive_clip(
    gradient: Any,
    weight: Any,
    axes: int | Sequence[int],
    clipping: float,
    eps: float = 1e-3,
) -> Any:
    """Clips each unit's gradient relative to the norm of its weights.

    This is Adaptive Gradient Clipping (AGC). A unit is one index along the
    axes that are *not* in `axes` (an output channel or neuron of a kernel);
    its gradient $G_i$ and weights $W_i$ are the slices at that index, and

    $$
    G_i \\leftarrow G_i \\cdot \\min\\left(1,
    \\frac{\\lambda \\max(\\|W_i\\|, \\epsilon)}{\\max(\\|G_i\\|, 10^{-6})}\\right)
    $$

    with Frobenius norms over `axes` and $\\lambda$ = `clipping`. A unit whose
    gradient norm is at most $\\lambda \\max(\\|W_i\\|, \\epsilon)$ is left
    exactly as it is; a larger one is scaled down to that norm. The axes are
    those Gradient Centralization averages over (`VariablePlan.agc_axes`).

    Args:
        gradient: A tensor of any backend, or a NumPy array.
        weight: The variable (or its value) the gradient belongs to, of the
            gradient's shape.
        axes: Int or sequence of ints, the axes each unit's norm is taken
            over (negative values count from the end), each at most once.
        clipping: $\\lambda$, the largest ratio of a unit's gradient norm to
            its weight norm; greater than 0.
        eps: $\\epsilon$, the smallest weight norm counted, so that units
            initialized at zero can move; greater than 0.

    Returns:
        A tensor of the gradient's shape and dtype. Norms of float16 and
        bfloat16 tensors are taken in float32.

    Raises:
        TypeError: If `axes` is not an int or a sequence of ints.
        ValueError: If an axis is out of range or repeated, `axes` is
            empty, the shapes differ, or `clipping` or `eps` is not positive.

    Examples:
        >>> import numpy as np
        >>> w = np.array([[3.0, 1.0], [4.0, 0.0]], "float32")
        >>> g = np.array([[0.3, 0.0], [0.4, 0.0]], "float32")
        >>> np.asarray(keras_gc.adaptive_clip(g, w, axes=0, clipping=0.01))
        array([[0.03, 0.  ],
               [0.04, 0.  ]], dtype=float32)

    Reference:
        Brock et al., "High-Performance Large-Scale Image Recognition Without
        Normalization", ICML 2021, https://arxiv.org/abs/2102.06171
    """
    check_positive("clipping", clipping)
    check_positive("eps", eps)
    gradient = ops.convert_to_tensor(gradient)
    shape = tuple(gradient.shape)
    if tuple(weight.shape) != shape:
        raise ValueError(
            f"`weight` has shape {tuple(weight.shape)} but `gradient` has shape "
            f"{shape}: give the weight the gradient belongs to."
        )
    return clip_reference(
        gradient, weight, normalize_axes(axes, len(shape)), clipping, eps
    )


def clip_reference(
    gradient: Any,
    weight: Any,
    axes: tuple[int, ...],
    clipping: float,
    eps: float,
    total: Any = None,
) -> Any:
    """`adaptive_clip` with its arguments already checked.

    With `total`, the scale is that of `total`, the gradient summed over the
    replicas of a distributed step; scaling each replica's `gradient` by it
    makes their sum the clipped `total`.
    """
    gradient = ops.convert_to_tensor(gradient)
    scale = clip_scale(
        gradient if total is None else total, weight, axes, clipping, eps
    )
    return gradient * ops.cast(scale, gradient.dtype)


def clip_scale(
    gradient: Any, weight: Any, axes: tuple[int, ...], clipping: float, eps: float
) -> Any:
    """Each unit's factor in `adaptive_clip`, of size 1 along `axes`."""
    limit = clipping * ops.maximum(unit_norm(weight, axes), eps)
    norm = ops.maximum(unit_norm(gradient, axes), _MIN_GRADIENT_NORM)
    # Exactly 1 for units under the limit, so their gradient is unchanged.
    return ops.minimum(1.0, limit / norm)


def clip_subtract_mean_reference(
    gradient: Any,
    weight: Any,
    axes: tuple[int, ...],
    clipping: float,
    eps: float,
    total: Any = None,
) -> Any:
    """AGC then GC over the same axes, as one pass over the gradient.

    The factor is constant over the averaged axes, so centralizing the
    clipped gradient equals clipping the centralized one: the norm and the
    mean can both be taken from the gradient as it came.
    """
    gradient = ops.convert_to_tensor(gradient)
    size = math.prod(gradient.shape[a] for a in axes)
    # One read of the gradient gives both its norm and its mean.
    gradient_sum, square_sum = backend.sums(gradient, axes)
    if total is not None:
        square_sum = backend.sums(total, axes)[1]
    limit = clipping * ops.maximum(unit_norm(weight, axes), eps)
    norm = ops.maximum(ops.sqrt(square_sum), _MIN_GRADIENT_NORM)
    scale = ops.minimum(1.0, limit / norm)
    mean = ops.cast(gradient_sum / size, gradient.dtype)
    return (gradient - mean) * ops.cast(scale, gradient.dtype)


def unit_norm(x: Any, axes: tuple[int, ...]) -> Any:
    """The float32 (or wider) Frobenius norm of `x` over `axes`, kept as size 1."""
    x = ops.convert_to_tensor(x)
    if standardize_dtype(x.dtype) in ("float16", "bfloat16"):
        x = ops.cast(x, "float32")
    return ops.sqrt(ops.sum(ops.square(x), axis=axes, keepdims=True))


def clip_all(
    gradients: Sequence[Any],
    weights: Sequence[Any],
    axes: Sequence[tuple[int, ...]],
    clipping: float,
    eps: float,
    also_centralize: Sequence[bool],
) -> list[Any]:
    """`clip_reference` on each gradient of a list, with its weight and axes,
    scaled by the norms of its sum over the replicas of a distributed step;
    those `also_centralize` marks are centralized in the same pass."""
    totals = backend.replica_sum(gradients)
    result = []
    for g, w, a, t, gc in zip(
        gradients, weights, axes, totals, also_centralize, strict=True
    ):
        native = None if t is not g else backend.clip_unit(g, w, a, clipping, eps, gc)
        if native is None:
            reference = clip_subtract_mean_reference if gc else clip_reference
            native = reference(g, w, a, clipping, eps, None if t is g else t)
        result.append(native)
    return result


def check_positive(name: str, value: Any) -> None:
    """Raises unless `value` is a real number greater than 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must be a number; received {value!r}.")
    if not value > 0:
        raise ValueError(f"`{name}` must be greater than 0; received {value!r}.")


def clip_planned(
    plan: Any,
    gradients: Sequence[Any],
    weights: Sequence[Any],
    indices: Sequence[int] | None,
    also_centralize: bool = False,
) -> list[Any]:
    """`Plan.clip`: AGC on the gradients of the entries `plan` clips; with
    `also_centralize`, the centralized ones among them are centralized too."""
    expected = len(plan) if indices is None else len(indices)
    if not len(gradients) == len(weights) == expected:
        raise ValueError(
            f"Expected {expected} gradients and as many weights, one per planned "
            f"variable, but received {len(gradients)} and {len(weights)}."
        )
    if plan.agc is None:
        return list(gradients)
    positions = range(expected) if indices is None else indices
    chosen = [
        (i, plan[p].agc_axes)
        for i, p in enumerate(positions)
        if plan[p].clipped and gradients[i] is not None
    ]
    result = list(gradients)
    clipped = clip_all(
        [gradients[i] for i, _ in chosen],
        [weights[i] for i, _ in chosen],
        [axes for _, axes in chosen],
        plan.agc,
        plan.agc_eps,
        [also_centralize and plan[positions[i]].centralized for i, _ in chosen],
    )
    for (i, _), gradient in zip(chosen, clipped, strict=True):
        result[i] = gradient
    return result
