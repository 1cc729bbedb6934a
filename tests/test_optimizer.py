"""The wrapper against the bare optimizer fed NumPy-centralized gradients."""

import keras
import numpy as np
import pytest
from _keras_features import requires_keras
from keras import layers

import keras_gc

# The reduced axes of each kernel, written out from the Keras layouts.
REDUCED = {
    "conv/kernel": (0, 1, 2),
    "up/kernel": (0, 1, 3),
    "depthwise/kernel": (0, 1),
    "head/kernel": (0,),
}

OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(0.1),
    "sgd-nesterov": lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    "sgd-weight-decay": lambda: keras.optimizers.SGD(0.1, weight_decay=0.01),
    "sgd-global-clipnorm": lambda: keras.optimizers.SGD(0.1, global_clipnorm=0.5),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.01, momentum=0.5),
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adam-clipnorm": lambda: keras.optimizers.Adam(0.01, clipnorm=0.5),
    "adam-clipvalue": lambda: keras.optimizers.Adam(0.01, clipvalue=0.05),
    "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
    "adamax": lambda: keras.optimizers.Adamax(0.01),
    "adagrad": lambda: keras.optimizers.Adagrad(0.1),
    "adadelta": lambda: keras.optimizers.Adadelta(1.0),
    "nadam": lambda: keras.optimizers.Nadam(0.01),
    "lion": lambda: keras.optimizers.Lion(0.01),
    "lamb": lambda: keras.optimizers.Lamb(0.01),
    "ftrl": lambda: keras.optimizers.Ftrl(0.1),
    "adafactor": lambda: keras.optimizers.Adafactor(0.1),
    "muon": lambda: keras.optimizers.Muon(0.01),
    "schedule-free-adamw": lambda: keras.optimizers.ScheduleFreeAdamW(0.01),
    "sgd-accumulation": lambda: keras.optimizers.SGD(
        0.1, momentum=0.9, gradient_accumulation_steps=2
    ),
    "adam-ema": lambda: keras.optimizers.Adam(
        0.01, use_ema=True, ema_overwrite_frequency=2
    ),
    "sgd-loss-scale-factor": lambda: keras.optimizers.SGD(0.1, loss_scale_factor=4.0),
}
# Newer than the oldest Keras supported: skipped where absent.
NEWER = {
    "muon": "optimizers.Muon",
    "schedule-free-adamw": "optimizers.ScheduleFreeAdamW",
}
OPTIMIZER_CASES = [
    pytest.param(name, marks=[requires_keras(NEWER[name])] if name in NEWER else [])
    for name in OPTIMIZERS
]


def make_model():
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            layers.Conv2D(4, 3, name="conv"),
            layers.Conv2DTranspose(3, 2, name="up"),
            layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise"),
            layers.Flatten(),
            layers.Dense(3, name="head"),
        ]
    )


def twin_models():
    first = make_model()
    second = make_model()
    second.set_weights(first.get_weights())
    return first, second


def local_path(variable):
    return variable.path.split("/", 1)[1]


def numpy_centralized(grads, variables):
    result = []
    for g, v in zip(grads, variables, strict=True):
        axes = REDUCED.get(local_path(v))
        result.append(g if axes is None else g - g.mean(axis=axes, keepdims=True))
    return result


def tensors(arrays):
    return [keras.ops.convert_to_tensor(a) for a in arrays]


def random_grads(variables, rng):
    # An offset per output unit gives the gradients a mean that GC must remove.
    return [
        (rng.standard_normal(v.shape) + rng.standard_normal(v.shape[-1:])).astype(
            "float32"
        )
        for v in variables
    ]


def assert_same_weights(first, second, rtol=1e-5, atol=1e-6):
    for a, b in zip(first.trainable_variables, second.trainable_variables, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a),
            keras.ops.convert_to_numpy(b),
            rtol=rtol,
            atol=atol,
            err_msg=local_path(a),
        )


@pytest.mark.parametrize("name", OPTIMIZER_CASES)
def test_equals_bare_optimizer_on_centralized_gradients(name):
    wrapped_model, reference_model = twin_models()
    wrapped = keras_gc.wrap(OPTIMIZERS[name]())
    reference = OPTIMIZERS[name]()
    rng = np.random.default_rng(0)
    for _ in range(3):
        grads = random_grads(wrapped_model.trainable_variables, rng)
        wrapped.apply(tensors(grads), wrapped_model.trainable_variables)
        reference.apply(
            tensors(numpy_centralized(grads, reference_model.trainable_variables)),
            reference_model.trainable_variables,
        )
        assert_same_weights(wrapped_model, reference_model)
    assert int(wrapped.iterations) == int(reference.iterations) > 0


def numpy_centralized_update(before, after, variables):
    """The weights `old + centralize(new - old)`, by NumPy."""
    return numpy_centralized(
        [b - a for a, b in zip(before, after, strict=True)], variables
    )


@pytest.mark.parametrize("name", OPTIMIZER_CASES)
def test_update_mode_equals_centralizing_the_bare_optimizers_step(name):
    wrapped_model, reference_model = twin_models()
    wrapped = keras_gc.wrap(OPTIMIZERS[name](), mode="update")
    reference = OPTIMIZERS[name]()
    rng = np.random.default_rng(0)
    for _ in range(3):
        grads = random_grads(wrapped_model.trainable_variables, rng)
        wrapped.apply(tensors(grads), wrapped_model.trainable_variables)
        variables = reference_model.trainable_variables
        before = [v.numpy() for v in variables]
        reference.apply(tensors(grads), variables)
        steps = numpy_centralized_update(
            before, [v.numpy() for v in variables], variables
        )
        for variable, old, step in zip(variables, before, steps, strict=True):
            variable.assign(old + step)
        assert_same_weights(wrapped_model, reference_model)


@pytest.mark.parametrize("name", OPTIMIZER_CASES)
def test_update_mode_keeps_kernel_means_fixed_for_any_optimizer(name):
    model = make_model()
    wrapped = keras_gc.wrap(OPTIMIZERS[name](), mode="update")
    wrapped.build(model.trainable_variables)
    means = {e.path: (e.axes, None) for e in wrapped.plan if e.centralized}
    kernels = {v.path: v for v in model.trainable_variables if v.path in means}
    initial = {p: kernels[p].numpy().mean(axis=means[p][0]) for p in kernels}
    rng = np.random.default_rng(8)
    for _ in range(5):
        grads = random_grads(model.trainable_variables, rng)
        wrapped.apply(tensors(grads), model.trainable_variables)
    for path, variable in kernels.items():
        mean = variable.numpy().mean(axis=means[path][0])
        np.testing.assert_allclose(mean, initial[path], atol=1e-6, err_msg=path)


@pytest.mark.parametrize(
    "name",
    [c for c in OPTIMIZER_CASES if c.values[0] in ("sgd-nesterov", "adam", "muon")],
)
def test_leaves_rank_one_variables_to_the_bare_optimizer(name):
    wrapped_model, reference_model = twin_models()
    wrapped = keras_gc.wrap(OPTIMIZERS[name]())
    reference = OPTIMIZERS[name]()
    rng = np.random.default_rng(1)
    for _ in range(2):
        grads = random_grads(wrapped_model.trainable_variables, rng)
        wrapped.apply(tensors(grads), wrapped_model.trainable_variables)
        reference.apply(tensors(grads), reference_model.trainable_variables)
    for a, b in zip(
        wrapped_model.trainable_variables,
        reference_model.trainable_variables,
        strict=True,
    ):
        if len(a.shape) == 1:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_apply_gradients_and_prebuilt_apply():
    wrapped_model, reference_model = twin_models()
    wrapped = keras_gc.wrap(keras.optimizers.Adam(0.01))
    wrapped.build(wrapped_model.trainable_variables)
    reference = keras.optimizers.Adam(0.01)
    rng = np.random.default_rng(2)
    grads = random_grads(wrapped_model.trainable_variables, rng)
    wrapped.apply(tensors(grads))
    grads = random_grads(wrapped_model.trainable_variables, rng)
    wrapped.apply_gradients(
        zip(tensors(grads), wrapped_model.trainable_variables, strict=True)
    )
    rng = np.random.default_rng(2)
    for _ in range(2):
        grads = random_grads(reference_model.trainable_variables, rng)
        reference.apply(
            tensors(numpy_centralized(grads, reference_model.trainable_variables)),
            reference_model.trainable_variables,
        )
    assert_same_weights(wrapped_model, reference_model)


def test_apply_to_a_subset_of_variables():
    wrapped_model, reference_model = twin_models()
    wrapped = keras_gc.wrap(keras.optimizers.SGD(0.1))
    wrapped.build(wrapped_model.trainable_variables)
    reference = keras.optimizers.SGD(0.1)
    reference.build(reference_model.trainable_variables)
    rng = np.random.default_rng(3)
    grads = random_grads(wrapped_model.trainable_variables, rng)
    wrapped.apply(tensors(grads[2:4]), wrapped_model.trainable_variables[2:4])
    expected = numpy_centralized(grads, reference_model.trainable_variables)
    reference.apply(tensors(expected[2:4]), reference_model.trainable_variables[2:4])
    assert_same_weights(wrapped_model, reference_model)


@pytest.mark.jax
@pytest.mark.torch
@pytest.mark.parametrize("mode", ["gradient", "update"])
def test_stateless_apply_equals_apply(mode):
    # Keras' TensorFlow optimizers refuse stateless_apply (tf.distribute).
    stateful_model, stateless_model = twin_models()
    stateful = keras_gc.wrap(keras.optimizers.Adam(0.01), mode=mode)
    stateless = keras_gc.wrap(keras.optimizers.Adam(0.01), mode=mode)
    stateless.build(stateless_model.trainable_variables)
    rng = np.random.default_rng(4)
    optimizer_values = [v.value for v in stateless.variables]
    trainable_values = [v.value for v in stateless_model.trainable_variables]
    for _ in range(2):
        grads = random_grads(stateful_model.trainable_variables, rng)
        stateful.apply(tensors(grads), stateful_model.trainable_variables)
        trainable_values, optimizer_values = stateless.stateless_apply(
            optimizer_values, tensors(grads), trainable_values
        )
    for variable, value in zip(
        stateless_model.trainable_variables, trainable_values, strict=True
    ):
        variable.assign(value)
    assert_same_weights(stateful_model, stateless_model)
    assert len(optimizer_values) == len(stateless.variables)
    (position,) = [
        i for i, v in enumerate(stateless.variables) if v is stateless.iterations
    ]
    assert int(keras.ops.convert_to_numpy(optimizer_values[position])) == 2


def test_forwards_learning_rate_iterations_and_variables():
    inner = keras.optimizers.SGD(0.1)
    wrapped = keras_gc.wrap(inner)
    assert float(wrapped.learning_rate) == pytest.approx(0.1)
    wrapped.learning_rate = 0.05
    assert float(inner.learning_rate) == pytest.approx(0.05)
    model = make_model()
    wrapped.build(model.trainable_variables)
    assert wrapped.iterations is inner.iterations
    assert all(any(v is w for w in wrapped.variables) for v in inner.variables)


def test_forwards_learning_rate_schedules():
    schedule = keras.optimizers.schedules.ExponentialDecay(1.0, 1, 0.5)
    wrapped = keras_gc.wrap(keras.optimizers.SGD(schedule))
    model = make_model()
    grads = random_grads(model.trainable_variables, np.random.default_rng(5))
    wrapped.apply(tensors(grads), model.trainable_variables)
    wrapped.apply(tensors(grads), model.trainable_variables)
    assert float(wrapped.learning_rate) == pytest.approx(0.25)


def test_forwards_exclude_from_weight_decay():
    inner = keras.optimizers.AdamW(0.01, weight_decay=0.5)
    model = make_model()
    wrapped = keras_gc.wrap(inner)
    wrapped.exclude_from_weight_decay([model.get_layer("head").kernel])
    # keras-nightly decides per variable when the optimizer is built.
    wrapped.build(model.trainable_variables)
    assert not inner._use_weight_decay(model.get_layer("head").kernel)
    assert inner._use_weight_decay(model.get_layer("conv").kernel)


def test_forwards_scale_loss_and_finalize_variable_values():
    inner = keras.optimizers.SGD(0.1, loss_scale_factor=8.0, use_ema=True)
    wrapped = keras_gc.wrap(inner)
    assert float(wrapped.scale_loss(2.0)) == pytest.approx(16.0)
    model = make_model()
    rng = np.random.default_rng(6)
    for _ in range(2):
        grads = random_grads(model.trainable_variables, rng)
        wrapped.apply(tensors(grads), model.trainable_variables)
    before = model.trainable_variables[0].numpy().copy()
    wrapped.finalize_variable_values(model.trainable_variables)
    average = inner._model_variables_moving_average[0].numpy()
    np.testing.assert_allclose(model.trainable_variables[0].numpy(), average)
    assert not np.allclose(before, average)


def test_unknown_variable_is_a_clear_error():
    wrapped = keras_gc.wrap(keras.optimizers.SGD(0.1))
    wrapped.build(make_model().trainable_variables)
    other = make_model()
    grads = random_grads(other.trainable_variables, np.random.default_rng(7))
    with pytest.raises(ValueError, match="Unknown variable"):
        wrapped.apply(tensors(grads), other.trainable_variables)


def test_plan_before_build_is_a_clear_error():
    optimizer = keras_gc.wrap(keras.optimizers.SGD())
    with pytest.raises(ValueError, match="no plan yet"):
        _ = optimizer.plan


def test_plan_of_the_built_optimizer():
    wrapped = keras_gc.wrap(keras.optimizers.SGD(), conv_only=True)
    wrapped.build(make_model().trainable_variables)
    centralized = [local_path(e) for e in wrapped.plan if e.centralized]
    assert centralized == ["conv/kernel", "up/kernel", "depthwise/kernel"]


def test_unmatched_include_warns_at_build():
    wrapped = keras_gc.wrap(keras.optimizers.SGD(), include=["conv", "missing"])
    with pytest.warns(UserWarning, match="missing"):
        wrapped.build(make_model().trainable_variables)


def _foreign(module):
    """An object whose class claims to come from another library."""
    return type("Foreign", (), {"__module__": module})()


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("adam", TypeError, r"keras\.optimizers\.get\('adam'\)"),
        (keras.optimizers.Adam, TypeError, "Pass an instance, `Adam"),
        (_foreign("tf_keras.src.optimizers.adam"), TypeError, "Keras 2"),
        (_foreign("torch.optim.sgd"), TypeError, "PyTorch optimizers"),
        (_foreign("optax._src.alias"), TypeError, "optax transformations"),
        (3, TypeError, "Keras 3 optimizer instance"),
        (keras_gc.wrap(keras.optimizers.Adam()), ValueError, "already centralizes"),
    ],
    ids=["string", "class", "keras2", "torch", "optax", "int", "wrapped"],
)
def test_wrap_rejects_what_is_not_an_optimizer(value, error, message):
    with pytest.raises(error, match=message):
        keras_gc.wrap(value)


@pytest.mark.torch
def test_wrap_rejects_a_real_torch_optimizer():
    import torch

    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(TypeError, match="PyTorch optimizers do not run inside Keras"):
        keras_gc.wrap(sgd)


def test_base_arguments_belong_on_the_inner_optimizer():
    with pytest.raises(ValueError, match="set it on the inner optimizer"):
        keras_gc.GradientCentralizationOptimizer(keras.optimizers.SGD(), clipnorm=1.0)
    with pytest.raises(TypeError, match="unexpected arguments `speed`"):
        keras_gc.GradientCentralizationOptimizer(keras.optimizers.SGD(), speed=2)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        keras_gc.wrap(keras.optimizers.SGD(), mode="weights")
    with pytest.raises(TypeError, match="`conv_only` must be a bool"):
        keras_gc.wrap(keras.optimizers.SGD(), conv_only="yes")


@pytest.mark.parametrize("mode", keras_gc.MODES)
def test_each_mode_centralizes_a_step_in_one_batched_call(mode, monkeypatch):
    import keras_gc._plan

    calls = []
    batched = keras_gc._plan.subtract_means

    def counted(tensors, axes, in_place):
        calls.append(len(tensors))
        return batched(tensors, axes, in_place)

    monkeypatch.setattr(keras_gc._plan, "subtract_means", counted)
    model = keras.Sequential(
        [keras.Input((4,)), layers.Dense(3), layers.Dense(5), layers.Dense(2)]
    )
    optimizer = keras_gc.wrap(keras.optimizers.Adam(0.1), mode=mode)
    grads = [keras.ops.ones(v.shape) for v in model.trainable_variables]
    optimizer.apply(grads, model.trainable_variables)
    # The three kernels, together; the biases are left alone.
    assert calls == [3]


def test_options_are_checked_once(monkeypatch):
    checks = []
    check = keras_gc.Options.__post_init__
    monkeypatch.setattr(
        keras_gc.Options, "__post_init__", lambda self: checks.append(check(self))
    )
    keras_gc.wrap(keras.optimizers.SGD(), exclude="bias")
    keras_gc.wrap(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()))
    keras_gc.GradientCentralizationOptimizer(keras.optimizers.SGD(), mode="update")
    assert len(checks) == 3


def test_options_as_an_options_object():
    options = keras_gc.Options(exclude="bias", mode="update")
    optimizer = keras_gc.GradientCentralizationOptimizer(
        keras.optimizers.SGD(), options=options
    )
    assert optimizer.options is options
    with pytest.raises(ValueError, match="got `options` and also `mode`"):
        keras_gc.GradientCentralizationOptimizer(
            keras.optimizers.SGD(), options=options, mode="gradient"
        )
    with pytest.raises(TypeError, match=r"`options` must be a `keras_gc\.Options`"):
        keras_gc.GradientCentralizationOptimizer(
            keras.optimizers.SGD(), options={"mode": "update"}
        )


@pytest.mark.parametrize(
    "name",
    [
        "SGD",
        "RMSprop",
        "Adam",
        pytest.param("Muon", marks=requires_keras("optimizers.Muon")),
        "Lamb",
    ],
)
def test_optimizers_module_builds_wrapped_builtins(name):
    wrapped = getattr(keras_gc.optimizers, name)(learning_rate=0.5, conv_only=True)
    # The isinstance story docs/api.md states.
    assert isinstance(wrapped, keras_gc.GradientCentralizationOptimizer)
    assert isinstance(wrapped, keras.optimizers.Optimizer)
    assert not isinstance(wrapped, getattr(keras.optimizers, name))
    assert isinstance(wrapped.inner_optimizer, getattr(keras.optimizers, name))
    assert wrapped.options.conv_only
    assert float(wrapped.learning_rate) == pytest.approx(0.5)


def test_optimizers_module_covers_every_builtin():
    wrappers = {"LossScaleOptimizer", "MultiOptimizer"}
    builtins = {
        name
        for name, value in vars(keras.optimizers).items()
        if isinstance(value, type)
        and issubclass(value, keras.optimizers.Optimizer)
        and value is not keras.optimizers.Optimizer
        and name not in wrappers
    }
    assert builtins == set(keras_gc.optimizers.__all__)


def test_reads_the_inner_optimizers_settings():
    inner = keras.optimizers.AdamW(
        1e-3,
        weight_decay=0.1,
        clipnorm=1.0,
        use_ema=True,
        ema_momentum=0.9,
        ema_overwrite_frequency=3,
        gradient_accumulation_steps=2,
        beta_1=0.8,
    )
    wrapped = keras_gc.wrap(inner)
    settings = {
        "weight_decay": 0.1,
        "clipnorm": 1.0,
        "clipvalue": None,
        "global_clipnorm": None,
        "use_ema": True,
        "ema_momentum": 0.9,
        "ema_overwrite_frequency": 3,
        "gradient_accumulation_steps": 2,
        "beta_1": 0.8,
        "amsgrad": False,
    }
    for name, value in settings.items():
        assert getattr(wrapped, name) == value, name
    with pytest.raises(AttributeError, match="no attribute 'not_a_setting'"):
        _ = wrapped.not_a_setting
    assert not hasattr(wrapped, "_not_forwarded")


def test_writes_the_inner_optimizers_settings():
    inner = keras.optimizers.Adam(1e-3)
    wrapped = keras_gc.wrap(inner)
    wrapped.beta_1 = 0.5
    wrapped.weight_decay = 0.25
    wrapped.global_clipnorm = 2.0
    assert (inner.beta_1, inner.weight_decay, inner.global_clipnorm) == (
        0.5,
        0.25,
        2.0,
    )
    assert (wrapped.beta_1, wrapped.weight_decay) == (0.5, 0.25)
    wrapped.note = "mine"  # an attribute the inner optimizer lacks stays here
    assert wrapped.note == "mine" and not hasattr(inner, "note")


def test_a_setting_written_through_the_wrapper_acts():
    # SGD with zero gradients and decoupled weight decay w: each step
    # multiplies every weight by 1 - lr * w.
    model = make_model()
    wrapped = keras_gc.wrap(keras.optimizers.SGD(0.1))
    wrapped.weight_decay = 0.5
    kernel = model.get_layer("head").kernel
    before = kernel.numpy().copy()
    wrapped.apply(
        [keras.ops.zeros(v.shape) for v in model.trainable_variables],
        model.trainable_variables,
    )
    np.testing.assert_allclose(kernel.numpy(), before * (1 - 0.1 * 0.5), rtol=1e-6)


def test_inner_ema_and_accumulation_make_no_variables_in_the_wrapper():
    inner = keras.optimizers.SGD(0.1, use_ema=True, gradient_accumulation_steps=2)
    wrapped = keras_gc.wrap(inner)
    model = make_model()
    wrapped.build(model.trainable_variables)
    bare = keras_gc.wrap(keras.optimizers.SGD(0.1))
    bare.build(make_model().trainable_variables)
    own = len(wrapped.variables) - len(inner.variables)
    assert own == len(bare.variables) - len(bare.inner_optimizer.variables)
    assert not hasattr(wrapped, "_accumulated_gradients")


def test_options_are_fixed_once_built():
    wrapped = keras_gc.wrap(keras.optimizers.SGD(0.1), exclude="head")
    wrapped.options = keras_gc.Options(exclude="conv")  # not built yet: allowed
    with pytest.raises(TypeError, match=r"must be a `keras_gc\.Options`"):
        wrapped.options = {"exclude": "conv"}
    model = make_model()
    wrapped.build(model.trainable_variables)
    config = wrapped.get_config()
    with pytest.raises(ValueError, match="is built: its plan was made"):
        wrapped.options = keras_gc.Options(exclude=".*")
    assert wrapped.options.exclude == ("conv",)
    assert wrapped.get_config() == config
    assert [local_path(e) for e in wrapped.plan if e.centralized] == [
        "up/kernel",
        "depthwise/kernel",
        "head/kernel",
    ]


def multi_optimizer_holding(wrapper):
    return keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(
            keras.optimizers.Adam(1e-3), {".*conv/.*": wrapper}
        )
    )


@requires_keras("optimizers.MultiOptimizer")
def test_wrap_refuses_a_multi_optimizer_that_already_centralizes():
    held = keras_gc.wrap(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="already centralizes gradients"):
        keras_gc.wrap(multi_optimizer_holding(held))
    plain = multi_optimizer_holding(keras.optimizers.SGD(0.1))
    assert keras_gc.wrap(plain).inner_optimizer is plain


@requires_keras("optimizers.MultiOptimizer")
def test_build_refuses_a_multi_optimizer_whose_function_picks_a_wrapper():
    held = keras_gc.wrap(keras.optimizers.SGD(0.1))
    multi = keras.optimizers.MultiOptimizer(lambda variable: held)
    wrapped = keras_gc.wrap(multi)
    with pytest.raises(ValueError, match="already centralizes gradients"):
        wrapped.build(make_model().trainable_variables)
