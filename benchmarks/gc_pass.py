"""The GC pass alone: `plan.centralize(gradients)`, against a copy of the same bytes.

The gradients have the workload's shapes. Next to the pass this measures the
machine's copy bandwidth (a NumPy copy of the same number of bytes) and the
backend's cheapest per-tensor op (`g * 2`) on the same tensors, in the same
run. On torch also "in place", what the wrapper runs in `fit` on the
variables' own `.grad`, next to `g.mul_(1)`.
"""

import argparse
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

import keras_gc
from benchmarks.timing import best_seconds
from benchmarks.workloads import BACKEND, build_workload


def sync(values: Any) -> Any:
    """Waits for asynchronously dispatched values (JAX), and returns them."""
    if BACKEND == "jax":
        import jax

        jax.block_until_ready(values)
    return values


def gc_pass_functions(
    plan: keras_gc.Plan, grads: list[Any]
) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """{how: (centralize, per-tensor g * 2)} for each way the pass can run."""

    def centralize() -> Any:
        return sync(plan.centralize(grads))

    def double() -> Any:
        return sync([g * 2 for g in grads])

    functions = {"eager": (centralize, double)}
    if BACKEND == "torch":
        # What the wrapper runs in torch `fit`, on the variables' own `.grad`
        # (centralizing twice changes nothing, so repeats cost the same).
        functions["in place"] = (
            lambda: plan.centralize(grads, in_place=True),
            lambda: [g.mul_(1.0) for g in grads],
        )
    if BACKEND == "jax":
        import jax

        jit_centralize = jax.jit(plan.centralize)
        jit_double = jax.jit(lambda gs: [g * 2 for g in gs])
        functions["jit"] = (
            lambda: sync(jit_centralize(grads)),
            lambda: sync(jit_double(grads)),
        )
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        for how, jit in (("graph", False), ("jit", True)):
            g_centralize = tf.function(plan.centralize, jit_compile=jit)
            g_double = tf.function(lambda gs: [g * 2 for g in gs], jit_compile=jit)
            functions[how] = (
                lambda f=g_centralize: f(grads),
                lambda f=g_double: f(grads),
            )
    return functions


def measure_gc_pass(workload: str, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds and GB/s of each way of running the GC pass, and of a copy."""
    build, _, _, _ = build_workload(workload, args)
    keras.utils.set_random_seed(0)
    model = build()
    plan = keras_gc.plan(model)
    rng = np.random.default_rng(0)
    arrays = [
        rng.standard_normal(tuple(v.shape), dtype="float32")
        for v in model.trainable_variables
    ]
    grads = [keras.ops.convert_to_tensor(a) for a in arrays]
    centralized = [e.centralized for e in plan]
    gc_bytes = sum(a.nbytes for a, c in zip(arrays, centralized, strict=True) if c)
    all_bytes = sum(a.nbytes for a in arrays)
    check_against_numpy(plan, arrays, grads)

    source = np.concatenate([a.ravel() for a in arrays])
    target = np.empty_like(source)
    repeats = 5 if args.quick else 11
    number = 3 if all_bytes > 50e6 else 20
    copy_s = best_seconds(lambda: np.copyto(target, source), repeats, number)
    result: dict[str, Any] = {
        "tensors": len(arrays),
        "centralized_tensors": sum(centralized),
        "centralized_bytes": gc_bytes,
        "all_bytes": all_bytes,
        "numpy_copy_gbps": all_bytes / copy_s / 1e9,
        "passes": {},
    }
    for how, (centralize, double) in gc_pass_functions(plan, grads).items():
        gc_s = best_seconds(centralize, repeats, number)
        double_s = best_seconds(double, repeats, number)
        result["passes"][how] = {
            "centralize_seconds": gc_s,
            "centralize_gbps": gc_bytes / gc_s / 1e9,
            "times2_seconds": double_s,
            "times2_gbps": all_bytes / double_s / 1e9,
        }
    return result


def check_against_numpy(
    plan: keras_gc.Plan, arrays: list[np.ndarray], grads: list[Any]
) -> None:
    """Fails loudly if `plan.centralize` does not match NumPy's GC."""
    outputs = plan.centralize(grads)
    for entry, array, output in zip(plan, arrays, outputs, strict=True):
        expected = array
        if entry.axes is not None:
            mean = array.astype("float64").mean(axis=entry.axes, keepdims=True)
            expected = (array - mean).astype(array.dtype)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(output), expected, rtol=1e-5, atol=1e-6
        )
