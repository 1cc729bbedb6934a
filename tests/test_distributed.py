"""GC under distribution equals GC on one device: JAX keras.distribution, tf.distribute.

Device counts must be fixed before a backend starts, so each engine's scenario runs
in a subprocess (this file run as a script) that prints its measurements as JSON;
the tests assert on them. JAX gets 4 virtual CPU devices
(`--xla_force_host_platform_device_count=4`), TensorFlow 2 logical CPU devices.

Every distributed run starts from the same initial weights and sees the same batches,
in the same order, as a single-device run; the weights after `STEPS` steps must agree
within `TOLERANCE`.

Tolerance. The distributed and single-device programs compute the same float32
sums in a different order: the batch sum of each gradient is split into per-device
partial sums and all-reduced, and with a kernel sharded along its input axis so is
GC's mean. Each reordered sum of n terms may differ by about n * 2**-24 relative (n is
at most 16 * 16 = 256 here, the batch times the conv's output positions: 1.5e-5
relative in the worst case, about sqrt(n) * 2**-24 = 1e-6 typically), and Adam's
division by sqrt(v) passes relative errors through unchanged. The measured maximum
is 6e-7 on weights of size about 1 (JAX ModelParallel with Adam), so
`TOLERANCE = 2e-5` leaves a 30x margin, while the GC-off control (how far the same
single-device run moves when GC is switched off) is at least 1.4e-2, 700x the
tolerance: a distributed run that skipped GC cannot pass, nor one whose inputs
differ by 0.1% (tried: 6e-5 to 1.3e-3).
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

TOLERANCE = 2e-5
MEAN_TOLERANCE = 1e-6  # float32 drift of a per-output kernel mean over STEPS steps.
STEPS = 8  # 2 epochs of 64 samples in batches of 16.
# "sgd-agc" adds adaptive gradient clipping, which is not linear: its unit
# norms must be those of the all-reduced gradient.
OPTIMIZERS = ("sgd", "adam", "sgd-agc")
MODES = ("gradient", "update")
JAX_DISTRIBUTIONS = ("data", "model_in", "model_out")
TF_LOOPS = ("fit", "custom")
TIMEOUT_S = 240


# ---------------------------------------------------------------------------
# Shared by both scenarios (they run in the subprocess).


def _make_model():
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((6, 6, 4)),
            layers.Conv2D(8, 3, activation="tanh", name="conv"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(8, activation="tanh", name="hidden"),
            layers.Dense(4, name="head"),
        ]
    )


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6, 6, 4)).astype("float32")
    y = rng.standard_normal((64, 4)).astype("float32")
    return x, y


def _initial_weights():
    import keras

    keras.utils.set_random_seed(0)
    return _make_model().get_weights()


def _optimizer(name, mode):
    import keras

    import keras_gc

    if name.startswith("sgd"):
        inner = keras.optimizers.SGD(0.1, momentum=0.9)
    else:
        inner = keras.optimizers.Adam(0.01)
    agc = {"agc": 0.01} if name.endswith("agc") else {}
    return inner if mode is None else keras_gc.wrap(inner, mode=mode, **agc)


def _max_diff(weights, reference):
    return max(
        float(np.max(np.abs(a - b))) for a, b in zip(weights, reference, strict=True)
    )


def _mean_drift(plan, before, after):
    """The largest move of a centralized kernel's per-output mean."""
    return max(
        float(np.max(np.abs(np.mean(a, e.axes) - np.mean(b, e.axes))))
        for e, b, a in zip(plan, before, after, strict=True)
        if e.centralized
    )


# ---------------------------------------------------------------------------
# JAX: keras.distribution on 4 virtual CPU devices.


def _collectives(hlo):
    """Counts the collective ops of a compiled HLO module, and all-gather shapes."""
    counts = {
        op: len(re.findall(rf"\s{op}(?:-start)?\(", hlo))
        for op in ("all-gather", "all-reduce", "all-to-all", "collective-permute")
    }
    gathers = sorted(re.findall(r"= (\S+) all-gather(?:-start)?\(", hlo))
    return counts, gathers


def _jax_layout(axis):
    import jax
    from keras.distribution import DeviceMesh, LayoutMap, ModelParallel

    mesh = DeviceMesh((2, 2), ["batch", "model"], devices=jax.devices())
    layout_map = LayoutMap(mesh)
    # Keys are fullmatch-ed against paths; ".*" at the end also shards the
    # optimizer's slots, named e.g. "sgd/sequential_conv_kernel_momentum".
    if axis == "in":
        layout_map[".*conv.kernel.*"] = (None, None, "model", None)
        layout_map[".*(hidden|head).kernel.*"] = ("model", None)
    else:
        layout_map[".*conv.kernel.*"] = (None, None, None, "model")
        layout_map[".*(hidden|head).kernel.*"] = (None, "model")
    return ModelParallel(layout_map=layout_map, batch_dim_name="batch")


def _jax_hlo(model, x, y):
    """Collectives in the compiled optimizer step and in the whole train step."""
    import jax
    from keras.src.backend.jax.trainer import _distribute_data

    optimizer = model.optimizer
    variables = [v.value for v in model.trainable_variables]
    grads = [
        jax.device_put(np.ones(v.shape, "float32"), v.value.sharding)
        for v in model.trainable_variables
    ]
    # No out_shardings: the partitioner picks the results' layout itself.
    apply = jax.jit(optimizer.stateless_apply)
    compiled = apply.lower([v.value for v in optimizer.variables], grads, variables)
    opt_counts, _ = _collectives(compiled.compile().as_text())
    new_variables, _ = apply([v.value for v in optimizer.variables], grads, variables)
    same_layout = all(
        new.sharding.is_equivalent_to(v.value.sharding, len(v.shape))
        for new, v in zip(new_variables, model.trainable_variables, strict=True)
    )
    step = jax.jit(
        model.train_step, out_shardings=(None, model._get_state_sharding_spec())
    )
    state = model._get_jax_state(True, True, True, True)
    hlo = step.lower(state, _distribute_data((x[:16], y[:16]))).compile().as_text()
    step_counts, gathers = _collectives(hlo)
    return {
        "optimizer_collectives": opt_counts,
        "optimizer_keeps_layout": same_layout,
        "step_collectives": step_counts,
        "step_gathers": gathers,
    }


def _jax_scenario():
    import jax
    import keras
    from keras.distribution import DataParallel

    assert len(jax.devices()) == 4, jax.devices()
    x, y = _data()
    init = _initial_weights()

    def run(distribution, name, mode, hlo=False):
        keras.distribution.set_distribution(distribution)
        try:
            model = _make_model()
            model.set_weights(init)
            model.compile(optimizer=_optimizer(name, mode), loss="mse")
            model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
            out = {"weights": model.get_weights()}
            if mode is not None:
                optimizer = model.optimizer
                kernels = [e.centralized for e in optimizer.plan]
                out["drift"] = _mean_drift(optimizer.plan, init, out["weights"])
            if mode is not None and distribution is not None:
                out["own_specs"] = [
                    list(v.value.sharding.spec) for v in optimizer._variables
                ]
                out["kernel_specs"] = [
                    list(v.value.sharding.spec)
                    for v, k in zip(model.trainable_variables, kernels, strict=True)
                    if k
                ]
                out["slot_specs"] = sorted(
                    str(list(v.value.sharding.spec))
                    for v in optimizer.inner_optimizer.variables
                    if "kernel" in v.path
                )
            if hlo:
                out["hlo"] = _jax_hlo(model, x, y)
            return out
        finally:
            keras.distribution.set_distribution(None)

    distributions = {
        "data": lambda: DataParallel(devices=jax.devices()),
        "model_in": lambda: _jax_layout("in"),
        "model_out": lambda: _jax_layout("out"),
    }
    results = {"runs": {}, "control": {}, "hlo": {}}
    for name in OPTIMIZERS:
        plain = run(None, name, None)["weights"]
        for mode in MODES:
            single = run(None, name, mode)
            results["control"][f"{name}/{mode}"] = _max_diff(plain, single["weights"])
            for label, make in distributions.items():
                hlo = name == "adam" and label != "data"
                dist = run(make(), name, mode, hlo=hlo)
                results["runs"][f"{label}/{name}/{mode}"] = {
                    "max_diff": _max_diff(dist["weights"], single["weights"]),
                    "drift": dist["drift"],
                    "single_drift": single["drift"],
                    "own_specs": dist["own_specs"],
                    "kernel_specs": dist["kernel_specs"],
                    "slot_specs": dist["slot_specs"],
                }
                if hlo:
                    results["hlo"][f"{label}/{mode}"] = dist["hlo"]
    for label in ("model_in", "model_out"):
        results["hlo"][f"{label}/plain"] = run(
            distributions[label](), "adam", None, hlo=True
        )["hlo"]
    return results


# ---------------------------------------------------------------------------
# TensorFlow: tf.distribute.MirroredStrategy on 2 logical CPU devices.


def _tf_scenario():
    import tensorflow as tf

    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    x, y = _data()
    init = _initial_weights()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2

    def run(strategy, loop, name, mode):
        # Model, optimizer and compile inside the scope, as tf.distribute needs.
        with strategy.scope():
            model = _make_model()
            model.set_weights(init)
            optimizer = _optimizer(name, mode)
            model.compile(optimizer=optimizer, loss="mse")
            # A custom loop must build the optimizer here: Keras optimizers
            # (ours or not) cannot create their variables inside strategy.run.
            optimizer.build(model.trainable_variables)
        if loop == "fit":
            model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        else:
            _tf_custom_loop(strategy, model, optimizer, x, y)
        out = {"weights": model.get_weights()}
        if mode is not None:
            out["drift"] = _mean_drift(optimizer.plan, init, out["weights"])
        if strategy is mirrored:
            replicas = [v.value.values for v in model.trainable_variables]
            out["replica_diff"] = max(
                float(np.max(np.abs(r[0].numpy() - r[1].numpy()))) for r in replicas
            )
            out["own_types"] = sorted(
                {type(v.value).__name__ for v in optimizer._variables}
            )
        return out

    default = tf.distribute.get_strategy()
    results = {"runs": {}, "control": {}}
    for name in OPTIMIZERS:
        plain = run(default, "fit", name, None)["weights"]
        for mode in MODES:
            for loop in TF_LOOPS:
                single = run(default, loop, name, mode)
                if loop == "fit":
                    results["control"][f"{name}/{mode}"] = _max_diff(
                        plain, single["weights"]
                    )
                dist = run(mirrored, loop, name, mode)
                results["runs"][f"{loop}/{name}/{mode}"] = {
                    "max_diff": _max_diff(dist["weights"], single["weights"]),
                    "drift": dist["drift"],
                    "single_drift": single["drift"],
                    "replica_diff": dist["replica_diff"],
                    "own_types": dist["own_types"],
                }
    return results


def _tf_custom_loop(strategy, model, optimizer, x, y):
    import keras
    import tensorflow as tf

    batch = 16
    loss_fn = keras.losses.MeanSquaredError(reduction="sum")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat(2)

    @tf.function
    def step(xb, yb):
        def replica_step(xb, yb):
            with tf.GradientTape() as tape:
                # Divide by the global batch: the all-reduce sums the replicas.
                loss = loss_fn(yb, model(xb, training=True)) / (batch * 4)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)

        strategy.run(replica_step, args=(xb, yb))

    for xb, yb in strategy.experimental_distribute_dataset(dataset):
        step(xb, yb)


# ---------------------------------------------------------------------------
# The tests.


def _scenario(backend, **env):
    env = {**os.environ, "KERAS_BACKEND": backend, **env}
    done = subprocess.run(
        [sys.executable, __file__, backend],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"{backend} scenario failed:\n{done.stderr[-6000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def jax_results():
    return _scenario("jax", XLA_FLAGS="--xla_force_host_platform_device_count=4")


@pytest.fixture(scope="module")
def tf_results():
    return _scenario("tensorflow", TF_CPP_MIN_LOG_LEVEL="2")


@pytest.mark.jax
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("distribution", JAX_DISTRIBUTIONS)
def test_jax_distribution_equals_one_device(jax_results, distribution, name, mode):
    run = jax_results["runs"][f"{distribution}/{name}/{mode}"]
    assert run["max_diff"] < TOLERANCE
    # The test can fail: GC moves these weights by far more than the tolerance.
    assert jax_results["control"][f"{name}/{mode}"] > 100 * TOLERANCE


@pytest.mark.jax
@pytest.mark.parametrize("distribution", JAX_DISTRIBUTIONS)
def test_jax_distributed_gc_keeps_kernel_means(jax_results, distribution):
    runs = jax_results["runs"]
    # SGD in both modes, and any optimizer in mode="update", keep each kernel's
    # per-output mean where it started.
    for key in ("sgd/gradient", "sgd/update", "adam/update"):
        assert runs[f"{distribution}/{key}"]["drift"] < MEAN_TOLERANCE, key
    # Adam's per-element scaling does move the means with mode="gradient".
    assert runs[f"{distribution}/adam/gradient"]["drift"] > 100 * MEAN_TOLERANCE


@pytest.mark.jax
@pytest.mark.parametrize("distribution", JAX_DISTRIBUTIONS)
def test_jax_layouts_of_kernels_slots_and_wrapper_variables(jax_results, distribution):
    for name in OPTIMIZERS:
        for mode in MODES:
            run = jax_results["runs"][f"{distribution}/{name}/{mode}"]
            # The wrapper's own scalars (iterations, learning_rate) are replicated.
            assert run["own_specs"] == [[], []]
            conv, dense = {
                "data": ([None] * 4, [None, None]),
                "model_in": ([None, None, "model", None], ["model", None]),
                "model_out": ([None, None, None, "model"], [None, "model"]),
            }[distribution]
            expected = [conv, dense, dense]
            assert run["kernel_specs"] == expected
            # The layout map's patterns give the optimizer's slots the same layout.
            slots = 1 if name.startswith("sgd") else 2
            assert run["slot_specs"] == sorted(str(spec) for spec in expected * slots)


@pytest.mark.jax
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis", ["in", "out"])
def test_jax_gc_gathers_no_sharded_kernel(jax_results, axis, mode):
    hlo = jax_results["hlo"][f"model_{axis}/{mode}"]
    plain = jax_results["hlo"][f"model_{axis}/plain"]
    # The optimizer step alone, compiled with no imposed output layout: GC adds
    # no gather and its results keep the kernels' sharding.
    assert hlo["optimizer_collectives"]["all-gather"] == 0
    assert hlo["optimizer_collectives"]["all-to-all"] == 0
    assert hlo["optimizer_keeps_layout"]
    # A mean over a sharded input axis is a partial sum plus an all-reduce of
    # one value per output unit; over an unsharded axis it is local.
    reduces = hlo["optimizer_collectives"]["all-reduce"]
    assert reduces > 0 if axis == "in" else reduces == 0
    assert plain["optimizer_collectives"]["all-reduce"] == 0
    # The whole train step gathers exactly what it gathers without GC (the
    # backward matmuls' own gathers, XLA's choice).
    assert hlo["step_gathers"] == plain["step_gathers"]


@pytest.mark.tensorflow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("loop", TF_LOOPS)
def test_mirrored_strategy_equals_one_device(tf_results, loop, name, mode):
    run = tf_results["runs"][f"{loop}/{name}/{mode}"]
    assert run["max_diff"] < TOLERANCE
    # Both replicas hold bitwise the same weights (mode="update" assigns each
    # replica's copy in replica context, from the same all-reduced step).
    assert run["replica_diff"] == 0.0
    # The wrapper's own variables are mirrored like the inner optimizer's.
    assert run["own_types"] == ["MirroredVariable"]
    assert tf_results["control"][f"{name}/{mode}"] > 100 * TOLERANCE
    if name.startswith("sgd") or mode == "update":
        assert run["drift"] < MEAN_TOLERANCE
    else:
        assert run["drift"] > 100 * MEAN_TOLERANCE


if __name__ == "__main__":
    backend = sys.argv[1]
    scenario = {"jax": _jax_scenario, "tensorflow": _tf_scenario}[backend]
    print(json.dumps(scenario()))
