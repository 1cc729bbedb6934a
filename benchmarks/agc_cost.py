"""XLA's bytes for one jitted step with AGC, against the bare step plus AGC's floor.

    KERAS_BACKEND=jax python -m benchmarks.agc_cost

The floor of AGC then GC, fused: one read of each clipped kernel's gradient
(its norm and its mean, taken together) and one read of its weights (their
norm); GC alone on the kernels AGC leaves (the head) reads their gradient
once. The bare step's own reads and writes are not counted twice.
"""

import argparse
import json
import math
from typing import Any

import keras

import keras_gc
from benchmarks.cost import COST_SHAPES, step_cost
from benchmarks.workloads import build_workload, make_loss, make_optimizer

ARMS = {
    "bare": None,
    "gc": {},
    "agc": {"agc": 0.01, "gc": False},
    "agc+gc": {"agc": 0.01},
}


def floor_bytes(plan: keras_gc.Plan) -> float:
    """The bytes AGC and GC must add to a step, as described above."""
    total = 0
    for entry in plan:
        size = 4 * math.prod(entry.shape)
        if entry.clipped:
            total += 2 * size  # the gradient once, the weights once
        elif entry.centralized:
            total += size
    return total


def measure(workload: str, optimizer: str) -> dict[str, Any]:
    args = argparse.Namespace(**COST_SHAPES, resnet_size=64, resnet_batch=8)
    build, x, y, loss_name = build_workload(workload, args)
    loss = keras.losses.get(make_loss(loss_name))
    result: dict[str, Any] = {"workload": workload, "optimizer": optimizer}
    for arm, options in ARMS.items():
        model = build()
        inner = make_optimizer(optimizer)
        wrapped = inner if options is None else keras_gc.wrap(inner, **options)
        cost = step_cost(model, wrapped, x, y, loss)
        result[arm] = cost["bytes"]
        if options is not None:
            floor = result["bare"] + floor_bytes(wrapped.plan)
            result[f"{arm}/bare"] = cost["bytes"] / result["bare"]
            result[f"{arm}/floor"] = cost["bytes"] / floor
    return result


def main() -> None:
    for workload in ("hoh", "dense60"):
        print(json.dumps(measure(workload, "sgdm")))


if __name__ == "__main__":
    main()
