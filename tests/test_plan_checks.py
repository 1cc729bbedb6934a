"""What `Plan.centralize`, `plan` and `apply` refuse: wrong shapes, pairs,
generators, dicts, mismatched lengths and unbuilt models, each with an error
that names what was wrong."""

import keras
import numpy as np
import pytest
from keras import layers

import keras_gc


def _model():
    return keras.Sequential([keras.Input((4,)), layers.Dense(3, name="dense")])


def _gradients(model):
    rng = np.random.default_rng(0)
    return [rng.random(v.shape).astype("float32") for v in model.trainable_variables]


def test_a_gradient_of_the_wrong_shape_is_refused():
    plan = keras_gc.plan(_model())
    with pytest.raises(
        ValueError, match=r"Gradient 0 has shape \(12,\).*dense/kernel.*\(4, 3\)"
    ):
        plan.centralize([np.ones(12, "float32"), None])
    with pytest.raises(ValueError, match=r"Gradient 0 has shape \(4, 3\).*dense/bias"):
        plan.centralize([np.ones((4, 3), "float32")], indices=[1])


def test_pairs_generators_and_dicts_are_refused():
    model = _model()
    plan = keras_gc.plan(model)
    gradients = _gradients(model)
    pairs = list(zip(gradients, model.trainable_variables, strict=True))
    with pytest.raises(
        TypeError, match=r"Gradient 0 \(for `.*dense/kernel`\) is a tuple.*pairs"
    ):
        plan.centralize(pairs)
    with pytest.raises(TypeError, match=r"received a generator.*list"):
        plan.centralize(g for g in gradients)
    with pytest.raises(TypeError, match="received a dict"):
        plan.centralize(dict(enumerate(gradients)))


def test_right_gradients_still_pass():
    model = _model()
    kernel, bias = _gradients(model)
    out = keras_gc.plan(model).centralize((kernel, bias))
    np.testing.assert_allclose(out[0], kernel - kernel.mean(axis=0), atol=1e-6)
    np.testing.assert_array_equal(out[1], bias)


def test_apply_with_mismatched_lengths_names_both_counts():
    model = _model()
    optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1))
    kernel, _ = _gradients(model)
    with pytest.raises(ValueError, match="received 1 gradients for 2 variables"):
        optimizer.apply([kernel], model.trainable_variables)


def test_apply_with_a_wrong_shape_names_the_variable():
    model = _model()
    optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1))
    kernel, bias = _gradients(model)
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*dense/kernel"):
        optimizer.apply([kernel.T, bias], model.trainable_variables)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = layers.Dense(3)

    def call(self, x):
        return self.dense(x)


def test_an_unbuilt_model_is_refused_until_called():
    model = _Subclassed()
    with pytest.raises(ValueError, match=r"not built yet.*model\(x\)"):
        keras_gc.plan(model)
    model(np.zeros((1, 4), "float32"))
    assert [e.centralized for e in keras_gc.plan(model)] == [True, False]


def test_an_unbuilt_sequential_is_refused():
    with pytest.raises(ValueError, match="not built yet"):
        keras_gc.plan(keras.Sequential([layers.Dense(3)]))
