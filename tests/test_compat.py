"""Each Keras internal of `keras_gc/_compat.py` still exists and means what
keras_gc takes it to mean. A Keras release that renames one fails here, with
the Keras version and the attribute in the message."""

import inspect

import keras
import numpy as np
import pytest
from _keras_features import requires_keras
from keras import layers

from keras_gc import _compat


def _built_optimizer(**kwargs):
    model = keras.Sequential([keras.Input((3,)), layers.Dense(4), layers.Dense(2)])
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9, **kwargs)
    optimizer.build(model.trainable_variables)
    return optimizer, model


def test_a_missing_internal_names_keras_version_and_attribute():
    with pytest.raises(AttributeError) as info:
        _compat.optimizer_variables(object())
    message = str(info.value)
    assert f"Keras {keras.__version__}" in message
    assert "`object._variables`" in message


def test_optimizer_variables():
    optimizer, model = _built_optimizer()
    own = _compat.optimizer_variables(optimizer)
    # iterations, learning rate, one momentum per trainable variable.
    assert len(own) == 2 + len(model.trainable_variables)
    assert [id(v) for v in own] == [id(v) for v in optimizer.variables]


def test_built_variables():
    optimizer, model = _built_optimizer()
    built = _compat.built_variables(optimizer)
    assert [id(v) for v in built] == [id(v) for v in model.trainable_variables]


def test_variable_index():
    optimizer, model = _built_optimizer()
    for i, variable in enumerate(model.trainable_variables):
        assert _compat.variable_index(optimizer, variable) == i
    stranger = keras.Variable(np.zeros(2), name="stranger")
    with pytest.raises(KeyError):
        _compat.variable_index(optimizer, stranger)


def test_moving_averages():
    optimizer, model = _built_optimizer(use_ema=True)
    averages = _compat.moving_averages(optimizer)
    assert [tuple(a.shape) for a in averages] == [
        tuple(v.shape) for v in model.trainable_variables
    ]
    # Keras' SwapEMAWeights reads the attribute under this name.
    assert _compat.MOVING_AVERAGES in inspect.getsource(
        keras.callbacks.SwapEMAWeights
    ), f"Keras {keras.__version__}'s SwapEMAWeights reads another attribute"
    plain, _ = _built_optimizer()
    with pytest.raises(AttributeError):
        _compat.moving_averages(plain)


def test_nested_layers():
    inner_dense = layers.Dense(2, name="inner_dense")
    inputs = keras.Input((3,))
    block = keras.Model(inputs, inner_dense(inputs), name="block")
    head = layers.Dense(1, name="head")
    root = keras.Sequential([keras.Input((3,)), block, head], name="root")
    found = _compat.nested_layers(root)
    for layer in (root, block, inner_dense, head):
        assert any(f is layer for f in found), layer.name


def test_metric_direction():
    assert _compat.metric_direction(keras.metrics.BinaryAccuracy()) == "up", (
        f"Keras {keras.__version__}: no `Metric._direction` on BinaryAccuracy"
    )
    assert _compat.metric_direction(keras.metrics.MeanSquaredError()) == "down"

    class Unsaid(keras.metrics.Mean):
        pass

    assert _compat.metric_direction(keras.metrics.Metric.__new__(Unsaid)) is None


@pytest.mark.torch
def test_torch_variable_value_is_the_parameter():
    import torch

    variable = keras.Variable(np.ones((2, 2), "float32"))
    assert hasattr(variable, _compat.VARIABLE_VALUE), (
        f"Keras {keras.__version__}: no `KerasVariable.{_compat.VARIABLE_VALUE}`"
    )
    parameter = getattr(variable, _compat.VARIABLE_VALUE)
    assert isinstance(parameter, torch.nn.Parameter)
    (parameter * 3).sum().backward()
    np.testing.assert_array_equal(parameter.grad.numpy(), np.full((2, 2), 3.0))


def test_is_variable():
    layer = layers.Dense(2)
    layer.build((None, 3))
    assert _compat.is_variable(layer.kernel), (
        f"Keras {keras.__version__}: a Dense kernel is not a Keras variable"
    )
    assert _compat.is_variable(keras.Variable(np.zeros(2)))
    assert not _compat.is_variable(np.zeros(2))
    assert not _compat.is_variable(keras.ops.zeros(2))


def test_layer_classes_keeps_only_what_this_keras_has():
    assert _compat.layer_classes("Dense", "NoSuchLayer") == (layers.Dense,)


@requires_keras("layers.RMSNormalization")
def test_rms_normalization_scale_is_left_alone_where_keras_has_it():
    import keras_gc

    model = keras.Sequential(
        [keras.Input((3, 4)), layers.RMSNormalization(), layers.Dense(2)]
    )
    entries = {e.path: e for e in keras_gc.plan(model).entries}
    (scale,) = [e for p, e in entries.items() if "rms_normalization" in p]
    assert not scale.centralized
    assert scale.reason == "normalization parameter"


def test_func_dump_saves_a_lambda_that_keras_loads_back():
    dumped = _compat.func_dump(lambda variable: variable.path.endswith("kernel"))
    loaded = keras.saving.deserialize_keras_object(
        {"class_name": "__lambda__", "config": {"value": dumped}}, safe_mode=False
    )
    assert loaded(keras.Variable(np.zeros(2), name="kernel"))


def test_producer_and_node_inputs_walk_a_functional_graph_back():
    inputs = keras.Input((3,))
    hidden = layers.Dense(4, name="hidden")(inputs)
    outputs = layers.Dense(2, name="head")(hidden)
    operation, node_index = _compat.producer(outputs)
    assert operation.name == "head"
    (before,) = _compat.node_inputs(operation, node_index)
    assert _compat.producer(before)[0].name == "hidden"
    (first,) = _compat.node_inputs(*_compat.producer(before))
    assert isinstance(_compat.producer(first)[0], layers.InputLayer)
