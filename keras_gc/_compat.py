"""Every Keras internal keras_gc relies on, named once, and the newer Keras
features it uses only where the installed Keras has them.

Keras offers no public way to do what these do. A Keras release that renames
one breaks it here, and `tests/test_compat.py` then fails naming the Keras
version and the attribute (as keras-hub keeps `keras_hub/src/utils/keras_utils.py`).

Private attributes read or written:

- `BaseOptimizer._variables`: the optimizer's own variables (`variables` of
  a wrapper is its own plus the inner optimizer's);
- `BaseOptimizer._trainable_variables`: the variables it was built with;
- `BaseOptimizer._get_variable_index(variable)`: a variable's position there;
- `BaseOptimizer._model_variables_moving_average`: the EMA copies, which
  Keras' `SwapEMAWeights` reads one wrapper deep (the wrapper forwards it
  under that name);
- `Layer._flatten_layers(include_self, recursive)`: a layer's nested layers;
- `Metric._direction`: `"up"` or `"down"`, as `EarlyStopping` reads it;
- `KerasVariable._value` (torch): the `torch.nn.Parameter` itself;
- `KerasVariable`: the base class of all Keras variables, where Keras (3.6
  and older) exports another as `keras.Variable`;
- `keras.src.utils.python_utils.func_dump`: how a `Lambda` layer saves its
  function, which options given as lambdas are saved with;
- `KerasTensor._keras_history` and `Operation._inbound_nodes`: how a
  functional model's graph is walked back from its outputs (Keras' own
  `Functional` walks it so), to find the final classifier.
"""

from typing import Any

import keras
from keras import layers

VARIABLE_VALUE = "_value"
"""The torch backend's `KerasVariable` attribute holding the parameter itself;
`variable.value` would cost scope, device and autocast checks per variable."""

MOVING_AVERAGES = "_model_variables_moving_average"
"""Where a Keras optimizer with `use_ema=True` keeps its moving averages."""


def optimizer_variables(optimizer: keras.optimizers.Optimizer) -> list[Any]:
    """The optimizer's own variables (iterations, learning rate, its slots)."""
    return _private(optimizer, "_variables")


def built_variables(optimizer: keras.optimizers.Optimizer) -> list[Any]:
    """The trainable variables the optimizer was built with, in order."""
    return _private(optimizer, "_trainable_variables")


def variable_index(optimizer: keras.optimizers.Optimizer, variable: Any) -> int:
    """The position of `variable` among `built_variables(optimizer)`.

    Raises:
        KeyError: The optimizer was not built with `variable`.
    """
    index: int = _private(optimizer, "_get_variable_index")(variable)
    return index


def moving_averages(optimizer: keras.optimizers.Optimizer) -> list[Any]:
    """The optimizer's EMA copies of the model's variables.

    Raises:
        AttributeError: The optimizer keeps none (`use_ema=False`), so that
            `hasattr` tells, as Keras' `SwapEMAWeights` asks it.
    """
    averages: list[Any] = getattr(optimizer, MOVING_AVERAGES)
    return averages


def nested_layers(root: layers.Layer) -> list[layers.Layer]:
    """`root` and every layer inside it, at any depth (as `fit`, `summary`
    and saving list them)."""
    flatten = _private(root, "_flatten_layers")
    return list(flatten(include_self=True, recursive=True))


def metric_direction(metric: keras.metrics.Metric) -> str | None:
    """`"up"` or `"down"`: which way the metric improves; `None` when it
    does not say (a custom metric may not)."""
    direction = getattr(metric, "_direction", None)
    return direction if direction in ("up", "down") else None


def is_variable(value: Any) -> bool:
    """Whether `value` is a Keras variable, as layers and `keras.Variable` make."""
    return isinstance(value, _VARIABLE_BASE)


def _variable_base() -> type:
    # Up to Keras 3.6 at least, `keras.Variable` is a sibling of the class of
    # the variables layers make; both derive from `KerasVariable`. From 3.8
    # on, `keras.Variable` is their base.
    for cls in keras.Variable.__mro__:
        if cls.__name__ == "KerasVariable":
            return cls
    return keras.Variable


_VARIABLE_BASE = _variable_base()


def producer(tensor: Any) -> tuple[Any, int] | None:
    """The (operation, node index) that made a symbolic tensor, or `None`
    for an input or a tensor no operation made."""
    history = getattr(tensor, "_keras_history", None)
    if history is None or history.operation is None:
        return None
    return history.operation, history.node_index


def node_inputs(operation: Any, node_index: int) -> list[Any]:
    """The symbolic tensors that the call `node_index` of `operation` took."""
    node = _private(operation, "_inbound_nodes")[node_index]
    return list(node.input_tensors)


def func_dump(function: Any) -> Any:
    """A lambda's code, as `keras.layers.Lambda` saves it; Keras loads it back
    (with `safe_mode=False` only) in `deserialize_keras_object`."""
    from keras.src.utils import python_utils

    return _private(python_utils, "func_dump")(function)


def layer_classes(*names: str) -> tuple[type[layers.Layer], ...]:
    """The classes of `keras.layers` among `names` that this Keras has, e.g.
    `RMSNormalization` (Keras 3.9 and later)."""
    return tuple(getattr(layers, name) for name in names if hasattr(layers, name))


def _private(owner: Any, name: str) -> Any:
    try:
        return getattr(owner, name)
    except AttributeError:
        raise AttributeError(
            f"keras_gc reads `{getattr(owner, '__name__', type(owner).__name__)}"
            f".{name}`, which Keras "
            f"{keras.__version__} does not have. Install a Keras that "
            "keras_gc supports (see docs/keras.md), or report this Keras "
            "version to keras_gc."
        ) from None
