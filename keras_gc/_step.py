"""One optimizer step's Gradient Centralization, in either mode, as pure
functions of a plan: the wrapper runs the inner optimizer between them."""

from collections.abc import Callable, Sequence
from typing import Any

from keras import ops

from keras_gc import backend
from keras_gc._clipping import clip_planned
from keras_gc._plan import Plan


def around_inner_step(
    plan: Plan,
    mode: str,
    grads: Sequence[Any],
    weights: Sequence[Any],
    indices: Sequence[int] | None,
    inner_step: Callable[[list[Any]], Sequence[Any]],
) -> list[Any]:
    """Runs `inner_step`, with GC (and AGC) where `mode` puts it.

    Args:
        plan: The plan of the variables `weights` belong to.
        mode: `"gradient"`: clip and centralize the gradients `inner_step`
            gets. `"update"`: clip them, and centralize the change
            `inner_step` makes to each planned weight.
        grads: One gradient (or `None`) per weight.
        weights: The variables, or their values, in the plan's order (or
            that of `indices`).
        indices: Positions in the plan of `weights`, or `None` for all.
        inner_step: The inner optimizer's step: takes the gradients, returns
            the new weights (the variables themselves, when it updates them).

    Returns:
        The new weights: those `inner_step` returned, and, in update mode,
        a new value for each centralized weight it moved.
    """
    if mode == "gradient":
        return list(inner_step(centralized_gradients(plan, grads, weights, indices)))
    # AGC clips the gradient the inner optimizer sees, as NFNets does.
    grads = plan.clip(list(grads), weights, indices)
    entries = plan.entries if indices is None else [plan[i] for i in indices]
    # Snapshots of the kernels about to move: the step's only extra memory.
    # (Copies, because torch optimizers update their inputs in place.)
    before = [
        ops.copy(w) if e.centralized and g is not None else None
        for w, g, e in zip(weights, grads, entries, strict=True)
    ]
    return centralized_updates(plan, before, list(inner_step(grads)), indices)


def centralized_gradients(
    plan: Plan,
    grads: Sequence[Any],
    weights: Sequence[Any],
    indices: Sequence[int] | None,
) -> list[Any]:
    """AGC then GC: one pass over each kernel both touch, then GC on the rest,
    as one batched backend call."""
    grads = clip_planned(plan, list(grads), weights, indices, also_centralize=True)
    return plan._gc_after_agc._subtract_means(
        grads, indices, backend.own_gradients(grads, weights)
    )


def centralized_updates(
    plan: Plan,
    before: Sequence[Any],
    after: Sequence[Any],
    indices: Sequence[int] | None,
) -> list[Any]:
    """`old + GC(new - old)` for each weight with a snapshot in `before`.

    The changes are centralized by the batched backend call that gradients
    take; they are this step's own tensors, so torch may overwrite them.
    """
    changes = [
        None if old is None else new - old
        for old, new in zip(before, after, strict=True)
    ]
    changes = plan._subtract_means(changes, indices, backend.overwritable(changes))
    return [
        new if old is None else old + change
        for old, new, change in zip(before, after, changes, strict=True)
    ]
