"""Gradient Centralization for every Keras 3 optimizer, on every backend.

>>> import keras, keras_gc
>>> optimizer = keras_gc.wrap(keras.optimizers.RMSprop(1e-4))
"""

from keras_gc import comparison, optimizers
from keras_gc._centralize import centralize
from keras_gc._optimizer import GradientCentralizationOptimizer, wrap
from keras_gc._options import MODES, Options
from keras_gc._plan import Plan, VariablePlan, centralize_gradients, plan
from keras_gc._version import __version__ as __version__
from keras_gc.comparison import compare

__all__ = [
    "MODES",
    "GradientCentralizationOptimizer",
    "Options",
    "Plan",
    "VariablePlan",
    "centralize",
    "centralize_gradients",
    "compare",
    "comparison",
    "optimizers",
    "plan",
    "wrap",
]
