"""Finds the Keras layer that owns each variable.

Keras variables do not point back to their layer, and an optimizer is built
from a bare list of variables. With a layer or model at hand, its own layers
are searched (`owners_in`). With variables alone, as in an optimizer's
`build`, the layers are found among the live Python objects (`find_owners`):
one pass over the objects the garbage collector tracks, once per build,
never per step. Its cost grows with the number of live objects; the figures
are in docs/performance.md.

Either way, the owner of a variable is the layer holding it whose name is
the one before the variable's in its path (`.../<layer name>/<variable
name>`), else the holder with the fewest weights: a model holds its layers'
variables too, and a tied layer holds another layer's.
"""

import gc
from collections.abc import Iterable, Sequence
from typing import Any

from keras import layers

from keras_gc import _compat


def owners_in(root: layers.Layer, variables: Sequence[Any]) -> dict[int, layers.Layer]:
    """Maps `id(variable)` to its owner among `root` and its nested layers."""
    return _choose(variables, _compat.nested_layers(root))


def find_owners(variables: Sequence[Any]) -> dict[int, layers.Layer]:
    """Maps `id(variable)` to its owner among all live Keras layers."""
    if not variables:
        return {}
    # type() rather than isinstance: some module proxies warn on __class__.
    live = (obj for obj in gc.get_objects() if issubclass(type(obj), layers.Layer))
    return _choose(variables, live)


def _choose(
    variables: Sequence[Any], candidates: Iterable[layers.Layer]
) -> dict[int, layers.Layer]:
    wanted = {id(v): _parent(v) for v in variables}
    owners: dict[int, tuple[tuple[bool, int], layers.Layer]] = {}
    for layer in candidates:
        weights = layer.weights
        for weight in weights:
            key = id(weight)
            if key not in wanted:
                continue
            rank = (layer.name != wanted[key], len(weights))
            if key not in owners or rank < owners[key][0]:
                owners[key] = (rank, layer)
    return {key: layer for key, (_, layer) in owners.items()}


def _parent(variable: Any) -> str:
    return "".join(str(variable.path).rsplit("/", 2)[-2:-1])
