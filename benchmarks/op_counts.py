"""The ops a GC pass runs: what is left of its fixed cost is the cost of each.

Once a pass's bytes are paid, what is left of its fixed cost per kernel is
the backend's cost per op, times the ops it runs per kernel. These are
counted, not timed, so they do not depend on the machine's load:

- PyTorch: the aten ops `torch.profiler` records in one pass (all of them,
  and those called from Python), and the time spent inside them;
- TensorFlow graph: the ops of the pass's graph that do work;
- JAX jit: the ops the compiled pass launches (`benchmarks.cost.launched_ops`).
"""

import time
from collections.abc import Callable
from typing import Any

from benchmarks.cost import launched_ops

# Graph ops that pass a tensor through or name one, doing no work.
_TF_NO_WORK = frozenset(("Placeholder", "Identity", "Const", "NoOp"))


def torch_ops(run: Callable[[], Any], repeats: int = 20) -> dict[str, float]:
    """The aten calls of one run of `run`, from `torch.profiler`.

    Args:
        run: One GC pass.
        repeats: Runs profiled; the figures are per run.

    Returns:
        `{"ops": every aten op, nested ones included, "from_python": those
        called from Python}` per run, and `"inside_share"`: the share of the
        (profiled) time spent inside them, the rest being Python.
    """
    from torch.profiler import ProfilerActivity, profile

    run()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        seconds = time.perf_counter() - start
    events = [e for e in profiler.events() if e.name.startswith("aten::")]
    top = [e for e in events if e.cpu_parent is None]
    return {
        "ops": len(events) / repeats,
        "from_python": len(top) / repeats,
        "inside_share": sum(e.cpu_time_total for e in top) / 1e6 / seconds,
    }


def tf_graph_ops(function: Any, *args: Any) -> dict[str, float]:
    """The ops of a `tf.function`'s graph for `args` that do work."""
    graph = function.get_concrete_function(*args).graph
    return {"ops": sum(op.type not in _TF_NO_WORK for op in graph.get_operations())}


def jax_ops(function: Any, *args: Any) -> dict[str, float]:
    """The ops `jax.jit(function)` launches for `args`."""
    import jax

    return {"ops": launched_ops(jax.jit(function).lower(*args).compile().as_text())}
