"""Finds the final classifier, whose kernels adaptive gradient clipping skips.

NFNets clips every layer but the last linear one. The last one is found from
the model's graph, never from the order of its variables: walking back from
each of `model.outputs` through layers that hold no planned kernel (softmax,
dropout, reshapes, normalization), the first layer that holds one is a head.
"""

import dataclasses
import gc
from collections.abc import Sequence
from typing import Any

import keras

from keras_gc import _compat
from keras_gc._options import Options


def find_head(
    target: Any, variables: Sequence[Any], kernels: set[int], options: Options
) -> tuple[set[int], str]:
    """Which kernels are the head, and how they were found.

    Args:
        target: What was planned: a layer or model, or a list of variables.
        variables: The planned variables.
        kernels: `id`s of the variables that have output axes (the kernels).
        options: The options; `agc_head` may name the head or turn it off.

    Returns:
        The `id`s of the head's kernels, and the rule that chose them, in words.
    """
    if options.agc_head is False:
        return set(), ""
    if options.agc_head is not None:
        return {
            id(v)
            for v in variables
            if id(v) in kernels and options.first_match("agc_head", v) is not None
        }, "named by agc_head"
    model = target if isinstance(target, keras.Model) else _model_of(variables)
    if model is not None:
        head = _head_of(model, kernels)
        if head:
            return head, "the final classifier, from the model's outputs"
    last = [id(v) for v in variables if id(v) in kernels][-1:]
    return set(last), (
        "the final classifier by the fallback rule: the last kernel of the "
        "list (no model with outputs holds exactly these variables)"
    )


def _model_of(variables: Sequence[Any]) -> keras.Model | None:
    """The live model whose trainable variables are exactly `variables`.

    An optimizer is built from a bare list, as `fit` does; the model is found
    as `keras_gc._owners` finds layers, once per build.
    """
    wanted = [id(v) for v in variables]
    if not wanted:
        return None
    for obj in gc.get_objects():
        # type() rather than isinstance: some module proxies warn on __class__.
        if (
            issubclass(type(obj), keras.Model)
            and _outputs(obj)
            and [id(v) for v in obj.trainable_variables] == wanted
        ):
            return obj
    return None


def _outputs(model: Any) -> list[Any]:
    """The model's symbolic outputs; none for a subclassed or unbuilt model."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return []
    return list(keras.tree.flatten(outputs)) if outputs else []


def _head_of(model: Any, kernels: set[int]) -> set[int]:
    """The kernels of the first layers holding one, back from each output."""
    head: set[int] = set()
    seen: set[int] = set()
    stack = _producers(_outputs(model))
    while stack:
        operation, node_index = stack.pop()
        if id(operation) in seen:
            continue
        seen.add(id(operation))
        own = [id(w) for w in getattr(operation, "trainable_weights", [])]
        found = [key for key in own if key in kernels]
        if found and isinstance(operation, keras.Model) and _outputs(operation):
            head |= _head_of(operation, kernels)
        elif found:
            head |= set(found)
        else:
            stack.extend(_producers(_compat.node_inputs(operation, node_index)))
    return head


def _producers(tensors: Sequence[Any]) -> list[tuple[Any, int]]:
    """The (operation, node index) that made each symbolic tensor."""
    made = [_compat.producer(t) for t in tensors]
    return [m for m in made if m is not None]


def plan_clipping(
    target: Any,
    variables: Sequence[Any],
    entries: tuple[Any, ...],
    options: Options,
) -> tuple[Any, ...]:
    """The GC plan's entries with the `gc` and `agc` options applied.

    With `gc=False` no entry is centralized, but its output axes stay, so that
    AGC takes its norms over the axes GC would have averaged over. Variables
    GC leaves alone by rule (no output axes) are not clipped either.
    """
    kernels = {
        id(v): e for v, e in zip(variables, entries, strict=True) if e.output_axes
    }
    head: set[int] = set()
    rule = ""
    if options.agc is not None:
        head, rule = find_head(target, variables, set(kernels), options)
    result = []
    for variable, entry in zip(variables, entries, strict=True):
        changes: dict[str, Any] = {}
        if not options.gc:
            changes["axes"] = None
        if id(variable) in head:
            changes["reason"] = f"{entry.reason}; no AGC: {rule}"
        elif options.agc is not None and id(variable) in kernels:
            output = entry.output_axes
            changes["agc_axes"] = tuple(
                i for i in range(len(entry.shape)) if i not in output
            )
        result.append(dataclasses.replace(entry, **changes))
    return tuple(result)
