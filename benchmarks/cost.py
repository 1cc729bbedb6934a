"""XLA's cost analysis of one compiled training step, with and without GC.

The step is built from `model.stateless_call` and `optimizer.stateless_apply`,
compiled by `jax.jit`, and `compiled.cost_analysis()` gives the bytes it
accesses and its flops. The optimized HLO gives the ops the step launches
(`launched_ops`): a fused GC adds one per centralized kernel, its mean, since
a reduction cannot share a loop with the update that reads its result. These
figures do not depend on the machine's load, so they settle what a per-step
time on a shared machine cannot: how far a fused GC is from its floor, one
extra read of each centralized kernel's gradient (`benchmarks.floors`). Only
JAX: TensorFlow compiles with XLA under `jit_compile=True` but exposes no cost
analysis (`experimental_get_compiler_ir` gives the HLO text only), and torch
does not compile with XLA.
"""

import argparse
import re
from typing import Any

import keras
import numpy as np

import keras_gc
from benchmarks import floors
from benchmarks.workloads import BACKEND, build_workload, make_loss, make_optimizer

# Entry-computation instructions that launch no work of their own.
_NO_WORK = frozenset(("parameter", "constant", "bitcast", "tuple", "get-tuple-element"))

# The horse-or-human CNN at the size and batch of the classic course.
COST_SHAPES = {"hoh_size": 150, "hoh_batch": 32}


def step_cost(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    loss: Any,
) -> dict[str, float]:
    """Bytes accessed and flops of one jitted training step (JAX only).

    Args:
        model: A built model.
        optimizer: The optimizer, bare or wrapped.
        x: One batch of inputs.
        y: Its targets.
        loss: A Keras loss function.

    Returns:
        `{"bytes": ..., "flops": ...}` from XLA's cost analysis, and `"ops"`,
        the ops the compiled step launches (`launched_ops`).
    """
    import jax

    optimizer.build(model.trainable_variables)

    def step(trainable: Any, non_trainable: Any, slots: Any, x: Any, y: Any) -> Any:
        def loss_of(trainable: Any, non_trainable: Any) -> Any:
            pred, non_trainable = model.stateless_call(
                trainable, non_trainable, x, training=True
            )
            return keras.ops.mean(loss(y, pred)), non_trainable

        (value, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(
            trainable, non_trainable
        )
        trainable, slots = optimizer.stateless_apply(slots, grads, trainable)
        return trainable, non_trainable, slots, value

    values = [
        [v.value for v in variables]
        for variables in (
            model.trainable_variables,
            model.non_trainable_variables,
            optimizer.variables,
        )
    ]
    compiled = jax.jit(step).lower(*values, x, y).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older jaxlibs: one dict per computation
        analysis = analysis[0]
    return {
        "bytes": analysis["bytes accessed"],
        "flops": analysis["flops"],
        "ops": launched_ops(compiled.as_text()),
    }


def launched_ops(hlo: str) -> int:
    """The ops an optimized HLO module's entry computation launches.

    Each fusion, convolution, dot, copy or other instruction of the entry
    computation is one kernel (a thunk on CPU, a launch on GPU); parameters,
    constants, bitcasts and tuples move no data.

    Args:
        hlo: `compiled.as_text()` of a jitted function.

    Returns:
        The number of such instructions.
    """
    entry = re.search(r"^ENTRY [^\n]*\{\n(.*?)^\}", hlo, re.DOTALL | re.MULTILINE)
    if entry is None:
        raise ValueError("No ENTRY computation in the HLO text.")
    opcodes = re.findall(
        r"^\s*(?:ROOT )?%\S+ = (?:\([^=]*?\)|\S+) ([\w-]+)\(",
        entry.group(1),
        re.MULTILINE,
    )
    return sum(opcode not in _NO_WORK for opcode in opcodes)


def measure_cost(
    workload: str, optimizer: str, args: argparse.Namespace
) -> dict[str, Any] | str:
    """The compiled step's bytes and flops, GC against bare, with their floors.

    Returns:
        The figures, or why there are none on this backend.
    """
    if BACKEND != "jax":
        return (
            "no cost analysis: TensorFlow exposes none for jit_compile=True"
            if BACKEND == "tensorflow"
            else "no cost analysis: torch does not compile with XLA"
        )
    shapes = argparse.Namespace(**{**vars(args), **COST_SHAPES})
    build, x, y, loss_name = build_workload(workload, shapes)
    loss = keras.losses.get(make_loss(loss_name))
    costs = {}
    for arm in ("bare", "gc"):
        keras.utils.set_random_seed(0)
        model = build()
        opt = make_optimizer(optimizer)
        costs[arm] = step_cost(
            model, keras_gc.wrap(opt) if arm == "gc" else opt, x, y, loss
        )
    shapes = [e.shape for e in keras_gc.plan(model) if e.centralized]
    elements, nbytes = floors.sizes(shapes)
    return {
        "input": list(x.shape),
        "centralized_elements": elements,
        "centralized_bytes": nbytes,
        **costs,
        "bytes": compare(
            costs["bare"]["bytes"],
            costs["gc"]["bytes"],
            floors.compiled_floor(costs["bare"]["bytes"], nbytes),
            floors.COMPILED_EXCESS_TARGET,
        ),
        "flops": compare(
            costs["bare"]["flops"],
            costs["gc"]["flops"],
            floors.flops_floor(costs["bare"]["flops"], elements),
        ),
        "ops": {
            "added_per_kernel": (costs["gc"]["ops"] - costs["bare"]["ops"])
            / len(shapes),
            "floor_per_kernel": floors.COMPILED_OPS_PER_KERNEL,
        },
    }


def compare(
    bare: float, gc: float, floor: float, target: float | None = None
) -> dict[str, Any]:
    """GC/bare, floor/bare, GC's excess over the floor, and its verdict if any."""
    over = floors.excess(gc, floor)
    return {
        "ratio": gc / bare,
        "floor_ratio": floor / bare,
        "excess": over,
        "verdict": None if target is None else floors.at_most(over, target),
    }
