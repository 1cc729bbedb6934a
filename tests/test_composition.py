"""The wrapper composed with the rest of Keras: loss scaling, EMA, MultiOptimizer,
learning-rate callbacks, interruption and custom training loops."""

import os

import keras
import numpy as np
import pytest
from _keras_features import requires_keras, requires_loss_scaling_reset
from _models import conv_and_dense, conv_and_dense_data

import keras_gc

REDUCED = {"conv/kernel": (0, 1, 2), "head/kernel": (0,)}


def centralized(grads, variables, paths=REDUCED):
    result = []
    for g, v in zip(grads, variables, strict=True):
        axes = paths.get(v.path.split("/", 1)[1])
        result.append(g if axes is None else g - g.mean(axis=axes, keepdims=True))
    return result


def random_grads(variables, rng):
    return [(rng.standard_normal(v.shape) + 1.0).astype("float32") for v in variables]


def tensors(arrays):
    return [keras.ops.convert_to_tensor(a) for a in arrays]


def assert_same_weights(first, second):
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def kernel_means_fixed(model, before):
    for v, old in zip(model.trainable_variables, before, strict=True):
        axes = REDUCED.get(v.path.split("/", 1)[1])
        if axes is not None:
            np.testing.assert_allclose(
                v.numpy().mean(axis=axes), old.mean(axis=axes), atol=1e-6
            )


def test_wrap_puts_gc_inside_a_loss_scale_optimizer():
    scaler = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.1), initial_scale=64.0, dynamic_growth_steps=7
    )
    wrapped = keras_gc.wrap(scaler, conv_only=True)
    assert isinstance(wrapped, keras.optimizers.LossScaleOptimizer)
    assert isinstance(wrapped.inner_optimizer, keras_gc.GradientCentralizationOptimizer)
    assert wrapped.inner_optimizer.inner_optimizer is scaler.inner_optimizer
    assert wrapped.inner_optimizer.options.conv_only
    assert (wrapped.initial_scale, wrapped.dynamic_growth_steps) == (64.0, 7)


def test_gc_around_a_loss_scale_optimizer_is_refused():
    scaler = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD())
    with pytest.raises(ValueError, match="inside the LossScaleOptimizer"):
        keras_gc.GradientCentralizationOptimizer(scaler)


def test_wrapping_a_built_loss_scale_optimizer_is_refused():
    scaler = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD())
    scaler.build(conv_and_dense().trainable_variables)
    with pytest.raises(ValueError, match="already built"):
        keras_gc.wrap(scaler)


@requires_loss_scaling_reset
def test_loss_scale_optimizer_resets_the_inner_loss_scale_factor():
    inner = keras.optimizers.SGD(0.1, loss_scale_factor=8.0)
    keras.optimizers.LossScaleOptimizer(keras_gc.wrap(inner))
    assert inner.loss_scale_factor is None


@pytest.mark.parametrize("scaled", [False, True], ids=["plain", "loss-scaled"])
def test_ema_with_swap_ema_weights(scaled):
    inner = keras.optimizers.SGD(0.05, momentum=0.9, use_ema=True)
    optimizer = keras_gc.wrap(inner)
    if scaled:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model = conv_and_dense()
    model.compile(optimizer=optimizer, loss="mse")
    before = [v.numpy() for v in model.trainable_variables]
    x, y = conv_and_dense_data()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        validation_data=(x, y),
        callbacks=[keras.callbacks.SwapEMAWeights(swap_on_epoch=True)],
        verbose=0,
    )
    # fit ends by writing the averages into the model (finalize_variable_values).
    for v, average in zip(
        model.trainable_variables, inner._model_variables_moving_average, strict=True
    ):
        np.testing.assert_allclose(v.numpy(), average.numpy(), atol=1e-7)
    # An average of points on a hyperplane lies on it.
    kernel_means_fixed(model, before)


@requires_keras("optimizers.MultiOptimizer")
def test_gc_inside_a_multi_optimizer_for_the_conv_tower_only():
    def multi(conv_optimizer):
        return keras.optimizers.MultiOptimizer(
            keras.optimizers.OptimizerMap(
                keras.optimizers.Adam(0.01), {".*conv/.*": conv_optimizer}
            )
        )

    model, reference_model = conv_and_dense(), conv_and_dense()
    reference_model.set_weights(model.get_weights())
    optimizer = multi(keras_gc.wrap(keras.optimizers.SGD(0.1, momentum=0.9)))
    reference = multi(keras.optimizers.SGD(0.1, momentum=0.9))
    rng = np.random.default_rng(0)
    for _ in range(3):
        grads = random_grads(model.trainable_variables, rng)
        optimizer.apply(tensors(grads), model.trainable_variables)
        expected = centralized(
            grads, reference_model.trainable_variables, {"conv/kernel": (0, 1, 2)}
        )
        reference.apply(tensors(expected), reference_model.trainable_variables)
    assert_same_weights(model, reference_model)


@requires_keras("optimizers.MultiOptimizer")
def test_gc_around_a_multi_optimizer():
    def multi():
        return keras.optimizers.MultiOptimizer(
            keras.optimizers.OptimizerMap(
                keras.optimizers.Adam(0.01), {".*conv/.*": keras.optimizers.SGD(0.1)}
            )
        )

    model, reference_model = conv_and_dense(), conv_and_dense()
    reference_model.set_weights(model.get_weights())
    optimizer, reference = keras_gc.wrap(multi()), multi()
    rng = np.random.default_rng(1)
    for _ in range(3):
        grads = random_grads(model.trainable_variables, rng)
        optimizer.apply(tensors(grads), model.trainable_variables)
        expected = centralized(grads, reference_model.trainable_variables)
        reference.apply(tensors(expected), reference_model.trainable_variables)
    assert_same_weights(model, reference_model)
    assert [o.name for o in optimizer.optimizers] == [
        o.name for o in optimizer.inner_optimizer.optimizers
    ]


def test_keras_optimizers_get_deserializes_the_wrapper():
    config = keras.optimizers.serialize(keras_gc.wrap(keras.optimizers.Adam(0.5)))
    optimizer = keras.optimizers.get(config)
    assert isinstance(optimizer, keras_gc.GradientCentralizationOptimizer)
    assert float(optimizer.learning_rate) == pytest.approx(0.5)
    wrapped = keras_gc.wrap(keras.optimizers.get("adam"))
    assert isinstance(wrapped.inner_optimizer, keras.optimizers.Adam)


def test_learning_rate_callbacks_reach_the_inner_optimizer():
    inner = keras.optimizers.SGD(0.1)
    model = conv_and_dense()
    model.compile(optimizer=keras_gc.wrap(inner), loss="mse")
    history = model.fit(
        *conv_and_dense_data(),
        epochs=3,
        verbose=0,
        callbacks=[
            keras.callbacks.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1)),
            keras.callbacks.ReduceLROnPlateau(
                monitor="loss", factor=0.5, patience=0, min_delta=1e9
            ),
        ],
    )
    # The scheduler sets 0.1 / 3 at the last epoch start, the plateau halves it.
    assert float(inner.learning_rate) == pytest.approx(0.1 / 3 / 2, rel=1e-5)
    assert history.history["learning_rate"][0] == pytest.approx(0.1, rel=1e-5)


@pytest.mark.tensorflow
def test_tensorboard_logs_the_learning_rate(tmp_path):
    import tensorflow as tf

    model = conv_and_dense()
    model.compile(optimizer=keras_gc.wrap(keras.optimizers.SGD(0.25)), loss="mse")
    model.fit(
        *conv_and_dense_data(),
        epochs=1,
        verbose=0,
        callbacks=[keras.callbacks.TensorBoard(tmp_path, update_freq=1)],
    )
    tags = {}
    for root, _, files in os.walk(tmp_path):
        for name in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                for value in event.summary.value:
                    tags[value.tag] = tf.make_ndarray(value.tensor)
    assert float(tags["epoch_learning_rate"]) == pytest.approx(0.25)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_exactly(tmp_path):
    x, y = conv_and_dense_data()
    uninterrupted, interrupted = conv_and_dense(), conv_and_dense()
    interrupted.set_weights(uninterrupted.get_weights())
    uninterrupted.compile(optimizer=keras_gc.optimizers.Adam(0.01), loss="mse")
    uninterrupted.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0)

    interrupted.compile(optimizer=keras_gc.optimizers.Adam(0.01), loss="mse")
    backup = keras.callbacks.BackupAndRestore(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted.fit(
            x,
            y,
            batch_size=8,
            epochs=4,
            shuffle=False,
            verbose=0,
            callbacks=[backup, _Interrupt()],
        )
    restarted = conv_and_dense()
    restarted.compile(optimizer=keras_gc.optimizers.Adam(0.01), loss="mse")
    restarted.fit(
        x, y, batch_size=8, epochs=4, shuffle=False, verbose=0, callbacks=[backup]
    )
    assert int(restarted.optimizer.iterations) == 16
    assert_same_weights(uninterrupted, restarted)


def test_model_checkpoint_resumes_exactly(tmp_path):
    x, y = conv_and_dense_data()
    uninterrupted, checkpointed = conv_and_dense(), conv_and_dense()
    checkpointed.set_weights(uninterrupted.get_weights())
    uninterrupted.compile(optimizer=keras_gc.optimizers.Adam(0.01), loss="mse")
    uninterrupted.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)

    checkpointed.compile(optimizer=keras_gc.optimizers.Adam(0.01), loss="mse")
    path = str(tmp_path / "epoch-{epoch}.keras")
    checkpointed.fit(
        x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
        callbacks=[keras.callbacks.ModelCheckpoint(path)],
    )  # fmt: skip
    resumed = keras.saving.load_model(path.format(epoch=2))
    resumed.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert int(resumed.optimizer.iterations) == 12
    assert_same_weights(uninterrupted, resumed)


@pytest.mark.tensorflow
@pytest.mark.parametrize("mode", ["gradient", "update"])
def test_tensorflow_custom_loop(mode):
    import tensorflow as tf

    model = conv_and_dense()
    optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1, momentum=0.9), mode=mode)
    x, y = conv_and_dense_data()
    before = [v.numpy() for v in model.trainable_variables]

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = keras.ops.mean((model(x) - y) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    for _ in range(3):
        train_step(x, y)
    assert int(optimizer.iterations) == 3
    kernel_means_fixed(model, before)


@pytest.mark.jax
@pytest.mark.parametrize("mode", ["gradient", "update"])
def test_jax_custom_loop(mode):
    import jax

    model = conv_and_dense()
    optimizer = keras_gc.wrap(keras.optimizers.Adam(0.01), mode=mode)
    optimizer.build(model.trainable_variables)
    x, y = conv_and_dense_data()
    before = [v.numpy() for v in model.trainable_variables]

    def loss_fn(trainable, non_trainable, x, y):
        prediction, _ = model.stateless_call(trainable, non_trainable, x)
        return keras.ops.mean((prediction - y) ** 2)

    @jax.jit
    def train_step(trainable, non_trainable, optimizer_values, x, y):
        grads = jax.grad(loss_fn)(trainable, non_trainable, x, y)
        return optimizer.stateless_apply(optimizer_values, grads, trainable)

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    optimizer_values = [v.value for v in optimizer.variables]
    for _ in range(3):
        trainable, optimizer_values = train_step(
            trainable, non_trainable, optimizer_values, x, y
        )
    for variable, value in zip(model.trainable_variables, trainable, strict=True):
        variable.assign(value)
    for variable, value in zip(optimizer.variables, optimizer_values, strict=True):
        variable.assign(value)
    assert int(optimizer.iterations) == 3
    if mode == "update":
        kernel_means_fixed(model, before)
    else:
        reference = conv_and_dense()
        reference.set_weights([np.asarray(b) for b in before])
        bare = keras.optimizers.Adam(0.01)
        for _ in range(3):
            grads = jax.grad(loss_fn)(
                [v.value for v in reference.trainable_variables],
                non_trainable,
                x,
                y,
            )
            expected = centralized(
                [np.asarray(g) for g in grads], reference.trainable_variables
            )
            bare.apply(tensors(expected), reference.trainable_variables)
        assert_same_weights(model, reference)


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["gradient", "update"])
def test_torch_custom_loop(mode):
    import torch

    model = conv_and_dense()
    optimizer = keras_gc.wrap(keras.optimizers.SGD(0.1, momentum=0.9), mode=mode)
    x, y = (torch.from_numpy(a) for a in conv_and_dense_data())
    before = [v.numpy() for v in model.trainable_variables]
    for _ in range(3):
        model.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        grads = [v.value.grad for v in model.trainable_variables]
        with torch.no_grad():
            optimizer.apply(grads, model.trainable_variables)
    assert int(optimizer.iterations) == 3
    kernel_means_fixed(model, before)


@pytest.mark.torch
def test_torch_centralizes_own_grads_in_place_and_copies_others():
    import torch

    model = conv_and_dense()
    reference = conv_and_dense()
    reference.set_weights(model.get_weights())
    optimizer = keras_gc.wrap(keras.optimizers.Adam(0.01))
    x, y = (torch.from_numpy(a) for a in conv_and_dense_data())
    loss = torch.mean((model(x) - y) ** 2)
    loss.backward()
    own = [v.value.grad for v in model.trainable_variables]
    raw = [g.numpy().copy() for g in own]
    copies = [g.clone() for g in own]
    expected = centralized(raw, model.trainable_variables)

    with torch.no_grad():
        optimizer.apply(own, model.trainable_variables)
        keras_gc.plan(reference).centralize(copies)
    keras.optimizers.Adam(0.01).apply(tensors(expected), reference.trainable_variables)

    for grad, want in zip(own, expected, strict=True):
        np.testing.assert_allclose(grad.numpy(), want, rtol=1e-5, atol=1e-7)
    for copy, before in zip(copies, raw, strict=True):
        np.testing.assert_array_equal(copy.numpy(), before)
    assert_same_weights(model, reference)


@pytest.mark.torch
def test_torch_plan_centralizes_in_place_on_request():
    import torch

    model = conv_and_dense()
    rng = np.random.default_rng(1)
    raw = [rng.standard_normal(v.shape).astype("float32") for v in model.weights]
    grads = [torch.from_numpy(a.copy()) for a in raw]

    result = keras_gc.plan(model).centralize(grads, in_place=True)

    for out, grad, want in zip(
        result, grads, centralized(raw, model.trainable_variables), strict=True
    ):
        assert out is grad
        np.testing.assert_allclose(grad.numpy(), want, rtol=1e-5, atol=1e-7)


@pytest.mark.jax
@pytest.mark.tensorflow
def test_in_place_is_refused_for_immutable_tensors():
    model = conv_and_dense()
    grads = tensors([np.ones(v.shape, "float32") for v in model.weights])
    with pytest.raises(ValueError, match=r"in place.*(Tensor|Array)"):
        keras_gc.plan(model).centralize(grads, in_place=True)
