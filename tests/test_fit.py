"""GC through `model.fit`: the paper's hyperplane property on the horse-or-human CNN."""

import keras
import numpy as np
import pytest

import keras_gc
from examples import horse_or_human


def horse_or_human_cnn(size=32):
    """The classic horse-or-human model, on small inputs and without the
    random augmentation, so that only the optimizer moves the weights."""
    return horse_or_human.build_model(size, augment=False)


def images(count=64, size=32):
    rng = np.random.default_rng(0)
    x = rng.random((count, size, size, 3), dtype="float32")
    y = x[:, : size // 2].mean(axis=(1, 2, 3)) > x.mean(axis=(1, 2, 3))
    return x, y.astype("float32")[:, None]


def kernel_means(model):
    """Each kernel's per-output-unit mean of its weights."""
    return [
        np.mean(v.numpy(), axis=tuple(range(len(v.shape) - 1)))
        for v in model.trainable_variables
        if v.path.endswith("kernel")
    ]


def mean_drift(optimizer, jit_compile):
    model = horse_or_human_cnn()
    model.compile(
        optimizer=optimizer, loss="binary_crossentropy", jit_compile=jit_compile
    )
    before = kernel_means(model)
    x, y = images()
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = kernel_means(model)
    return max(np.max(np.abs(a - b)) for a, b in zip(after, before, strict=True))


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "jit"])
def test_sgd_with_gc_keeps_kernel_means_on_their_hyperplane(jit_compile):
    sgd = keras.optimizers.SGD(0.05, momentum=0.9)
    gc_drift = mean_drift(keras_gc.wrap(sgd), jit_compile)
    # The control, eager: plain SGD's drift is the same computation compiled or
    # not, and compiling it again would double the test's time on torch.
    plain_drift = mean_drift(keras.optimizers.SGD(0.05, momentum=0.9), False)
    assert int(sgd.iterations) == 8
    assert gc_drift < 1e-6, gc_drift
    assert plain_drift > 1e-3, plain_drift


def test_adam_keeps_kernel_means_fixed_only_with_gc_on_the_update():
    # Adam rescales each coordinate, so a centralized gradient still moves the
    # means; centralizing Adam's step itself does not.
    update_drift = mean_drift(
        keras_gc.wrap(keras.optimizers.Adam(1e-3), mode="update"), jit_compile="auto"
    )
    gradient_drift = mean_drift(keras_gc.wrap(keras.optimizers.Adam(1e-3)), "auto")
    assert update_drift < 1e-6, update_drift
    assert gradient_drift > 1e-4, gradient_drift


def test_fit_reports_the_plan_it_used():
    optimizer = keras_gc.wrap(keras.optimizers.RMSprop(1e-4))
    model = horse_or_human_cnn()
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    x, y = images(16)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    plan = optimizer.plan
    assert len(plan) == 10
    assert [e.centralized for e in plan] == [e.path.endswith("kernel") for e in plan]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_fit_keeps_the_hyperplane(policy):
    keras.config.set_dtype_policy(policy)
    try:
        optimizer = keras_gc.wrap(keras.optimizers.SGD(0.05, momentum=0.9))
        model = horse_or_human_cnn()
        model.compile(optimizer=optimizer, loss="binary_crossentropy")
        before = kernel_means(model)
        model.fit(*images(), batch_size=16, epochs=1, verbose=0)
        after = kernel_means(model)
    finally:
        keras.config.set_dtype_policy("float32")
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.optimizer.inner_optimizer is optimizer
    assert int(optimizer.iterations) == 4
    for a, b in zip(after, before, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
