"""Every built-in Keras optimizer, with Gradient Centralization.

Each constructor has the name and arguments of its `keras.optimizers`
namesake, plus the keyword-only options of `keras_gc.wrap`, and returns the
optimizer wrapped in a `GradientCentralizationOptimizer`:

>>> optimizer = keras_gc.optimizers.RMSprop(learning_rate=1e-4)
>>> type(optimizer.inner_optimizer).__name__
'RMSprop'
"""

from collections.abc import Callable
from typing import Any

import keras

from keras_gc._optimizer import GradientCentralizationOptimizer

__all__ = [
    "SGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Ftrl",
    "Lamb",
    "Lion",
    "Muon",
    "Nadam",
    "RMSprop",
    "ScheduleFreeAdamW",
]

_GC_OPTIONS = ("conv_only", "include", "exclude", "output_axes", "mode")


def _centralized(
    cls: type[keras.optimizers.Optimizer],
) -> Callable[..., GradientCentralizationOptimizer]:
    def constructor(*args: Any, **kwargs: Any) -> GradientCentralizationOptimizer:
        options = {key: kwargs.pop(key) for key in _GC_OPTIONS if key in kwargs}
        return GradientCentralizationOptimizer(cls(*args, **kwargs), **options)

    constructor.__name__ = constructor.__qualname__ = cls.__name__
    constructor.__doc__ = (
        f"`keras.optimizers.{cls.__name__}` with Gradient Centralization.\n\n"
        f"Takes the arguments of `keras.optimizers.{cls.__name__}`, plus the "
        "keyword-only options of `keras_gc.wrap` "
        f"({', '.join(_GC_OPTIONS)}).\n\n"
        "Returns:\n"
        f"    A `keras_gc.GradientCentralizationOptimizer` around a new "
        f"`keras.optimizers.{cls.__name__}`.\n"
    )
    return constructor


SGD = _centralized(keras.optimizers.SGD)
Adadelta = _centralized(keras.optimizers.Adadelta)
Adafactor = _centralized(keras.optimizers.Adafactor)
Adagrad = _centralized(keras.optimizers.Adagrad)
Adam = _centralized(keras.optimizers.Adam)
AdamW = _centralized(keras.optimizers.AdamW)
Adamax = _centralized(keras.optimizers.Adamax)
Ftrl = _centralized(keras.optimizers.Ftrl)
Lamb = _centralized(keras.optimizers.Lamb)
Lion = _centralized(keras.optimizers.Lion)
Muon = _centralized(keras.optimizers.Muon)
Nadam = _centralized(keras.optimizers.Nadam)
RMSprop = _centralized(keras.optimizers.RMSprop)
ScheduleFreeAdamW = _centralized(keras.optimizers.ScheduleFreeAdamW)
