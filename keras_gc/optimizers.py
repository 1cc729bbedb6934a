"""Every optimizer of the installed Keras, with Gradient Centralization.

Each name here is a factory: a function with the name and arguments of its
`keras.optimizers` namesake, plus the keyword-only options of
`keras_gc.Options`, that returns the optimizer wrapped in a
`GradientCentralizationOptimizer`. The list is read from the installed
Keras, so it follows Keras releases.

What `isinstance` says: `keras_gc.optimizers.Adam(...)` is a
`keras_gc.GradientCentralizationOptimizer` and a `keras.optimizers.Optimizer`,
not a `keras.optimizers.Adam`; its `inner_optimizer` is the `Adam`. They are
factories rather than subclasses because one wrapper class is what saving,
`LossScaleOptimizer`, `MultiOptimizer` and the Keras callbacks see, whichever
optimizer it holds (an `Adam` subclass with GC would need a class per
optimizer, and could not hold an optimizer Keras adds later or a user
writes), and because `keras_gc.wrap` gives every other optimizer the same
object.

Examples:
    >>> optimizer = keras_gc.optimizers.RMSprop(learning_rate=1e-4)
    >>> type(optimizer.inner_optimizer).__name__
    'RMSprop'
"""

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import keras

from keras_gc._optimizer import GradientCentralizationOptimizer
from keras_gc._options import NAMES, Options

# The base class, and those that hold other optimizers rather than compute a
# step (wrap what they hold).
_NOT_UPDATE_RULES = ("Optimizer", "LossScaleOptimizer", "MultiOptimizer")

__all__ = sorted(
    name
    for name, value in vars(keras.optimizers).items()
    if isinstance(value, type)
    and issubclass(value, keras.optimizers.Optimizer)
    and name not in _NOT_UPDATE_RULES
)


def __getattr__(name: str) -> Callable[..., GradientCentralizationOptimizer]:
    if name not in __all__:
        raise AttributeError(
            f"keras_gc.optimizers has no `{name}`: the installed Keras "
            f"{keras.__version__} offers {', '.join(__all__)}. For another "
            "optimizer, use `keras_gc.wrap(optimizer)`."
        )
    return _factory(getattr(keras.optimizers, name))


def __dir__() -> list[str]:
    return [*globals(), *__all__]


@functools.cache
def _factory(
    cls: type[keras.optimizers.Optimizer],
) -> Callable[..., GradientCentralizationOptimizer]:
    """A function that makes a `cls` wrapped with GC.

    Its `__signature__` is `cls`'s with the options added as keyword-only
    arguments, which is what it accepts, so that `help()` and IDEs show them.
    """

    def constructor(*args: Any, **kwargs: Any) -> GradientCentralizationOptimizer:
        options = {key: kwargs.pop(key) for key in NAMES if key in kwargs}
        return GradientCentralizationOptimizer(cls(*args, **kwargs), **options)

    constructor.__name__ = constructor.__qualname__ = cls.__name__
    constructor.__module__ = __name__
    constructor.__signature__ = _signature(cls)  # type: ignore[attr-defined]
    constructor.__doc__ = (
        f"`keras.optimizers.{cls.__name__}` with Gradient Centralization.\n\n"
        f"Takes the arguments of `keras.optimizers.{cls.__name__}`, plus the "
        f"keyword-only options of `keras_gc.Options` ({', '.join(NAMES)}).\n\n"
        "Returns:\n"
        f"    A `keras_gc.GradientCentralizationOptimizer` around a new "
        f"`keras.optimizers.{cls.__name__}`.\n"
    )
    return constructor


def _signature(cls: type) -> inspect.Signature:
    """`cls`'s signature, with the options as keyword-only arguments."""
    parameters = list(inspect.signature(cls).parameters.values())
    clashes = [p.name for p in parameters if p.name in NAMES]
    if clashes:
        raise TypeError(
            f"keras.optimizers.{cls.__name__} takes `{'`, `'.join(clashes)}`, "
            "which is also a Gradient Centralization option; use "
            f"`keras_gc.wrap(keras.optimizers.{cls.__name__}(...), ...)`."
        )
    variadic = [p for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    fixed = [p for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
    options = [
        inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.default,
            annotation=field.type,
        )
        for field in dataclasses.fields(Options)
    ]
    return inspect.Signature([*fixed, *options, *variadic])
