"""The AGC+GC pass alone, eager, against its memory floor, on this backend.

    KERAS_BACKEND=torch python -m benchmarks.agc_pass

The pass is what the wrapper runs per step in `mode="gradient"` with
`agc=0.01`. Fused, it reads each clipped kernel's gradient and weights once
(the norms and the mean), then reads and writes the gradient once more (the
scaled, centralized result): two copies of the gradient's bytes at this
process's copy bandwidth (a NumPy copy of the same bytes). The head, GC
alone, is 1.5 copies. Each time is the fastest of many repetitions.
"""

import argparse
import json
from typing import Any

import keras
import numpy as np

import keras_gc
from benchmarks.cost import COST_SHAPES
from benchmarks.timing import best_seconds
from benchmarks.workloads import BACKEND, build_workload
from keras_gc._step import centralized_gradients


def measure(workload: str, repeats: int = 25) -> dict[str, Any]:
    args = argparse.Namespace(**COST_SHAPES, resnet_size=64, resnet_batch=8)
    build, _, _, _ = build_workload(workload, args)
    keras.utils.set_random_seed(0)
    model = build()
    variables = model.trainable_variables
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(tuple(v.shape), dtype="float32") for v in variables]
    grads = [keras.ops.convert_to_tensor(a) for a in arrays]
    weights = [v.value for v in variables]
    agc = keras_gc.plan(model, agc=0.01)
    gc = keras_gc.plan(model)
    clipped = sum(a.nbytes for a, e in zip(arrays, agc, strict=True) if e.clipped)
    head = sum(
        a.nbytes
        for a, e in zip(arrays, agc, strict=True)
        if e.centralized and not e.clipped
    )
    centralized = clipped + head
    number = 3 if centralized > 50e6 else 20
    source = np.ones(centralized // 4, "float32")
    target = np.empty_like(source)
    copy_bps = centralized / best_seconds(
        lambda: np.copyto(target, source), repeats, number
    )
    floor_s = (2 * clipped + 1.5 * head) / copy_bps
    gc_floor_s = 1.5 * centralized / copy_bps
    agc_s = best_seconds(
        lambda: centralized_gradients(agc, grads, weights, None), repeats, number
    )
    gc_s = best_seconds(lambda: gc.centralize(grads), repeats, number)
    return {
        "backend": BACKEND,
        "workload": workload,
        "kernels": sum(e.clipped for e in agc),
        "clipped_bytes": clipped,
        "agc_gc_seconds": agc_s,
        "agc_gc_floor_ratio": agc_s / floor_s,
        "gc_seconds": gc_s,
        "gc_floor_ratio": gc_s / gc_floor_s,
    }


def main() -> None:
    for workload in ("hoh", "dense60"):
        print(json.dumps(measure(workload)))


if __name__ == "__main__":
    main()
