"""How long an optimizer's build takes to plan, with many live Python objects.

A wrapper built from bare variables (as `fit` builds it) finds each variable's
layer among the live objects; `keras_gc.plan(model)` looks only in the model.
This times both on ResNet50, after creating `--live-objects` extra objects
that Python's garbage collector tracks (empty lists):

    KERAS_BACKEND=jax python -m benchmarks.plan_build --live-objects 10000000
"""

import argparse
import gc
import time
from collections.abc import Callable

import keras

import keras_gc


def fastest(function: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` calls of `function`, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--live-objects", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = keras.applications.ResNet50(weights=None)
    variables = model.trainable_variables
    extra = [[] for _ in range(args.live_objects)]
    tracked = len(gc.get_objects())
    from_variables = fastest(lambda: keras_gc.plan(variables), args.repeats)
    from_model = fastest(lambda: keras_gc.plan(model), args.repeats)
    print(
        f"ResNet50, {len(variables)} variables, {tracked:,} tracked objects "
        f"({len(extra):,} extra): plan from the variables (as an optimizer's "
        f"build) {from_variables:.3f} s; plan(model) {from_model:.3f} s"
    )


if __name__ == "__main__":
    main()
