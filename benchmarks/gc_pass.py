"""The GC pass alone: `plan.centralize(gradients)`, against its memory floor.

The gradients have the workload's shapes. An unfused pass reads each kernel
gradient once for the mean, then reads and writes it for the subtraction: its
floor is 1.5 copies of those bytes at the copy bandwidth of this process (a
NumPy copy of the same number of bytes), measured in the same run
(`benchmarks.floors`). Each time is the fastest of many repetitions: other
tenants of the machine can only slow a pass down. What is over the floor,
divided by the kernels, is the pass's fixed cost per kernel; on `dense60` it
is set beside the peers' (`benchmarks.peers.peer_passes`) on the same
gradients, the two passes timed in alternating rounds. Next to it is the
backend's cheapest per-tensor op (`g * 2`) on the same tensors, and the pass
against 1.5 of those: the floor the backend's own ops allow. On torch also
"in place", what the wrapper runs in `fit` on the variables' own `.grad`,
next to `g.mul_(1)`. The ops each pass runs are counted too
(`benchmarks.op_counts`).

A pass compiled on its own (`jax.jit`, a `tf.function` graph) is also timed
against the same call doing nothing (a graph returning its inputs; under
`jax.jit`, which would copy them, returning nothing): passing a list of
tensors into a compiled function costs the same whatever it computes, and a
training step does not pay it for GC, which runs inside the step. The pass's
fixed cost per kernel is given with and without that call. TensorFlow's XLA
has no such call: it copies every tensor it returns.
"""

import argparse
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

import keras_gc
from benchmarks import floors, op_counts
from benchmarks.peers import peer_passes
from benchmarks.timing import best_seconds, paired_best_seconds
from benchmarks.workloads import BACKEND, build_workload


def sync(values: Any) -> Any:
    """Waits for asynchronously dispatched values (JAX), and returns them."""
    if BACKEND == "jax":
        import jax

        jax.block_until_ready(values)
    return values


Pass = tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any] | None]


def gc_pass_functions(plan: keras_gc.Plan, grads: list[Any]) -> dict[str, Pass]:
    """{how: (centralize, per-tensor g * 2, the same call doing nothing or
    `None`)} for each way the pass can run."""

    def centralize() -> Any:
        return sync(plan.centralize(grads))

    def double() -> Any:
        return sync([g * 2 for g in grads])

    functions: dict[str, Pass] = {"eager": (centralize, double, None)}
    if BACKEND == "torch":
        # What the wrapper runs in torch `fit`, on the variables' own `.grad`
        # (centralizing twice changes nothing, so repeats cost the same).
        functions["in place"] = (
            lambda: plan.centralize(grads, in_place=True),
            lambda: [g.mul_(1.0) for g in grads],
            None,
        )
    if BACKEND == "jax":
        import jax

        jit_centralize = jax.jit(plan.centralize)
        jit_double = jax.jit(lambda gs: [g * 2 for g in gs])
        # A jitted function copies the inputs it returns: this call returns none.
        jit_call = jax.jit(lambda gs: None)
        functions["jit"] = (
            lambda: sync(jit_centralize(grads)),
            lambda: sync(jit_double(grads)),
            lambda: sync(jit_call(grads)),
        )
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        for how, jit in (("graph", False), ("jit", True)):
            g_centralize = tf.function(plan.centralize, jit_compile=jit)
            g_double = tf.function(lambda gs: [g * 2 for g in gs], jit_compile=jit)
            g_call = tf.function(lambda gs: [tf.identity(g) for g in gs])
            functions[how] = (
                lambda f=g_centralize: f(grads),
                lambda f=g_double: f(grads),
                None if jit else lambda f=g_call: f(grads),
            )
    return functions


def measure_gc_pass(workload: str, args: argparse.Namespace) -> dict[str, Any]:
    """Each way of running the GC pass against its floor, and the peers' passes."""
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
    kernels = sum(centralized)
    gc_bytes = sum(a.nbytes for a, c in zip(arrays, centralized, strict=True) if c)
    all_bytes = sum(a.nbytes for a in arrays)
    check_against_numpy(plan, arrays, grads)

    repeats = 11 if args.quick else 25
    number = 3 if all_bytes > 50e6 else 20
    source = np.ones(gc_bytes // 4, "float32")
    target = np.empty_like(source)
    copy_s = best_seconds(lambda: np.copyto(target, source), repeats, number)
    floor_s = floors.pass_floor_seconds(gc_bytes, gc_bytes / copy_s)

    def against_floor(seconds: float) -> dict[str, Any]:
        return {
            "centralize_seconds": seconds,
            "centralize_gbps": gc_bytes / seconds / 1e9,
            "floor_ratio": seconds / floor_s,
            "verdict": floors.at_most(seconds / floor_s, floors.PASS_TARGET),
            "per_kernel_seconds": floors.per_kernel_seconds(seconds, floor_s, kernels),
        }

    result: dict[str, Any] = {
        "tensors": len(arrays),
        "centralized_tensors": kernels,
        "centralized_bytes": gc_bytes,
        "all_bytes": all_bytes,
        "numpy_copy_gbps": gc_bytes / copy_s / 1e9,
        "floor_seconds": floor_s,
        "passes": {},
        "peers": {},
    }
    counted = pass_ops(plan, grads)
    functions = gc_pass_functions(plan, grads)
    for how, (centralize, double, call) in functions.items():
        double_s = best_seconds(double, repeats, number)
        centralize_s = best_seconds(centralize, repeats, number)
        call_s = None if call is None else best_seconds(call, repeats, number)
        ops = counted.get(how)
        result["passes"][how] = {
            "ops": ops,
            "ops_per_kernel": None if ops is None else ops["ops"] / kernels,
            **against_floor(centralize_s),
            "times2_seconds": double_s,
            "times2_gbps": all_bytes / double_s / 1e9,
            "backend_floor_ratio": centralize_s
            / floors.backend_floor_seconds(gc_bytes, all_bytes, double_s),
            "call_seconds": call_s,
            "per_kernel_in_call_seconds": None
            if call_s is None
            else floors.per_kernel_seconds(centralize_s - call_s, floor_s, kernels),
        }
    # The per-kernel cost shows where kernels are many and small.
    peers = peer_passes(grads) if workload == "dense60" else {}
    if isinstance(peers, str):
        result["peers"] = peers
        return result
    for name, (ours, peer) in peers.items():
        paired = paired_best_seconds(
            {"keras_gc": functions[ours][0], "peer": peer}, 4, repeats, number
        )
        row = against_floor(paired["peer"])
        mine = against_floor(paired["keras_gc"])["per_kernel_seconds"]
        row["versus"] = ours
        row["keras_gc_per_kernel_seconds"] = mine
        row["ops"] = op_counts.torch_ops(peer) if BACKEND == "torch" else None
        row["verdict"] = floors.at_most(mine, row["per_kernel_seconds"])
        result["peers"][name] = row
    return result


def pass_ops(plan: keras_gc.Plan, grads: list[Any]) -> dict[str, dict[str, float]]:
    """{how: the ops it runs (`benchmarks.op_counts`)} where they can be counted."""
    if BACKEND == "torch":
        return {
            "eager": op_counts.torch_ops(lambda: plan.centralize(grads)),
            "in place": op_counts.torch_ops(
                lambda: plan.centralize(grads, in_place=True)
            ),
        }
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return {"graph": op_counts.tf_graph_ops(tf.function(plan.centralize), grads)}
    if BACKEND == "jax":
        return {"jit": op_counts.jax_ops(plan.centralize, grads)}
    return {}


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
