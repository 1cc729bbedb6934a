"""Gradient Centralization for every Keras 3 optimizer, on every backend.

>>> import keras, keras_gc
>>> optimizer = keras_gc.wrap(keras.optimizers.RMSprop(1e-4))
"""

from keras_gc import comparison, optimizers
from keras_gc._centralize import centralize, centralize_gradients
from keras_gc._clipping import adaptive_clip
from keras_gc._optimizer import GradientCentralizationOptimizer, wrap
from keras_gc._options import MODES, Options
from keras_gc._plan import Plan, VariablePlan, plan
from keras_gc._version import __version__ as __version__
from keras_gc.comparison import compare

__all__ = [
    "MODES",
    "GradientCentralizationOptimizer",
    "Options",
    "Plan",
    "VariablePlan",
    "adaptive_clip",
    "centralize",
    "centralize_gradients",
    "compare",
    "comparison",
    "optimizers",
    "plan",
    "wrap",
]
