"""The GC pass of `mode="update"` alone, against its memory floor, beside the
gradient-mode pass, on this backend.

    KERAS_BACKEND=torch python -m benchmarks.update_pass

Update mode centralizes the change the inner optimizer made to each kernel:
`old + GC(new - old)`, through the same batched backend call as gradient
mode (`keras_gc._step.centralized_updates`). Fused, the pass reads the old
and new kernels once for the mean of their difference, then reads the new
kernel and writes the result (`new - mean`): two copies of the kernels' bytes
at this process's copy bandwidth (a NumPy copy of the same bytes). The
gradient-mode pass, `plan.centralize(gradients)`, is 1.5 copies. Beside them,
the update pass as keras-gc ran it before 0.2, kernel by kernel
(`old + subtract_mean(new - old)` for each). Each time is the fastest of many
repetitions; under JAX each pass is also timed in one `jax.jit`, as it runs
inside a `fit` step.
"""

import argparse
import json
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

import keras_gc
from benchmarks.cost import COST_SHAPES
from benchmarks.timing import best_seconds
from benchmarks.workloads import BACKEND, build_workload
from keras_gc._step import centralized_updates
from keras_gc.backend import subtract_mean


def measure(workload: str, repeats: int = 25) -> dict[str, Any]:
    args = argparse.Namespace(**COST_SHAPES, resnet_size=64, resnet_batch=8)
    build, _, _, _ = build_workload(workload, args)
    keras.utils.set_random_seed(0)
    model = build()
    plan = keras_gc.plan(model)
    rng = np.random.default_rng(0)
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    old = [rng.standard_normal(s, dtype="float32") for s in shapes]
    new = [a + 0.01 * rng.standard_normal(a.shape, dtype="float32") for a in old]
    kernels = sum(a.nbytes for a, e in zip(old, plan, strict=True) if e.centralized)
    number = 3 if kernels > 50e6 else 20
    source = np.ones(kernels // 4, "float32")
    target = np.empty_like(source)
    copy_bps = kernels / best_seconds(
        lambda: np.copyto(target, source), repeats, number
    )
    before = [
        keras.ops.convert_to_tensor(a) if e.centralized else None
        for a, e in zip(old, plan, strict=True)
    ]
    after = [keras.ops.convert_to_tensor(a) for a in new]
    check_against_numpy(plan, old, new, centralized_updates(plan, before, after, None))

    def update() -> Any:
        return centralized_updates(plan, before, after, None)

    def gradient() -> Any:
        return plan.centralize(after)

    def per_kernel(before: list[Any], after: list[Any]) -> list[Any]:
        return [
            n if o is None else o + subtract_mean(n - o, e.axes)
            for o, n, e in zip(before, after, plan, strict=True)
        ]

    passes: dict[str, tuple[Callable[[], Any], ...]] = {
        "eager": (update, gradient, lambda: per_kernel(before, after))
    }
    if BACKEND == "jax":
        import jax

        jit_update = jax.jit(lambda b, a: centralized_updates(plan, b, a, None))
        jit_gradient = jax.jit(plan.centralize)
        jit_per_kernel = jax.jit(per_kernel)
        passes["jit"] = (
            lambda: jax.block_until_ready(jit_update(before, after)),
            lambda: jax.block_until_ready(jit_gradient(after)),
            lambda: jax.block_until_ready(jit_per_kernel(before, after)),
        )
    result: dict[str, Any] = {
        "backend": BACKEND,
        "workload": workload,
        "kernels": sum(e.centralized for e in plan),
        "kernel_bytes": kernels,
    }
    for how, (update_pass, gradient_pass, per_kernel_pass) in passes.items():
        update_s = best_seconds(update_pass, repeats, number)
        gradient_s = best_seconds(gradient_pass, repeats, number)
        per_kernel_s = best_seconds(per_kernel_pass, repeats, number)
        result[how] = {
            "update_seconds": update_s,
            "update_floor_ratio": update_s / (2 * kernels / copy_bps),
            "per_kernel_update_seconds": per_kernel_s,
            "gradient_seconds": gradient_s,
            "gradient_floor_ratio": gradient_s / (1.5 * kernels / copy_bps),
        }
    return result


def check_against_numpy(
    plan: keras_gc.Plan, old: list[Any], new: list[Any], result: list[Any]
) -> None:
    """Raises unless the pass gave `old + GC(new - old)` for each kernel and
    `new` elsewhere, in NumPy."""
    for entry, o, n, r in zip(plan, old, new, result, strict=True):
        expected = n
        if entry.centralized:
            change = n - o
            expected = o + change - change.mean(axis=entry.axes, keepdims=True)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(r), expected, rtol=1e-5, atol=1e-6
        )


def main() -> None:
    for workload in ("hoh", "dense60"):
        print(json.dumps(measure(workload)))


if __name__ == "__main__":
    main()
