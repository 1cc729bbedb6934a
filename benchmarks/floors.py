"""Physical floors of Gradient Centralization's cost, and verdicts against targets.

GC on a kernel gradient of `b` bytes is a mean over its input axes and a
subtraction. Fused into the optimizer's update (XLA), the least it can add to
a training step is one extra read of the gradient, for the mean: `b` bytes.
Run on its own (PyTorch eager, TensorFlow graphs on CPU, eager JAX and
TensorFlow), it also reads the gradient again and writes it for the
subtraction: `3 b` bytes, which is 1.5 copies of `b` bytes (a copy reads and
writes each byte once).
"""

import math
from collections.abc import Iterable

# A fused GC may add at most this share over the floor of a compiled step.
COMPILED_EXCESS_TARGET = 0.01
# A fused GC launches one op per kernel, its mean: a reduction cannot share a
# loop with the update that reads its result.
COMPILED_OPS_PER_KERNEL = 1
# An unfused GC pass may take at most this many times its memory floor.
PASS_TARGET = 1.25
# Reads and writes of the unfused pass, in copies of the gradient's bytes.
PASS_COPIES = 1.5


def compiled_floor(bare: float, centralized_bytes: float) -> float:
    """The least bytes a compiled step with GC can access.

    Args:
        bare: Bytes accessed by the same step without GC.
        centralized_bytes: Total bytes of the centralized kernels' gradients.

    Returns:
        `bare + centralized_bytes`: one extra read of each centralized
        gradient.
    """
    return bare + centralized_bytes


def flops_floor(bare: float, centralized_elements: float) -> float:
    """The least floating-point operations of a step with GC.

    Args:
        bare: Flops of the same step without GC.
        centralized_elements: Total elements of the centralized gradients.

    Returns:
        `bare + 2 * centralized_elements`: an addition for the mean and a
        subtraction per element.
    """
    return bare + 2 * centralized_elements


def excess(measured: float, floor: float) -> float:
    """How far `measured` is over `floor`, as a share of it (0.01 is 1%)."""
    return measured / floor - 1


def pass_floor_seconds(centralized_bytes: float, copy_bytes_per_second: float) -> float:
    """The least time an unfused GC pass can take at the measured copy bandwidth.

    Args:
        centralized_bytes: Total bytes of the gradients the pass centralizes.
        copy_bytes_per_second: Bytes copied per second (each read once and
            written once), measured in the same process.

    Returns:
        The seconds of `PASS_COPIES` copies of `centralized_bytes`.
    """
    return PASS_COPIES * centralized_bytes / copy_bytes_per_second


def backend_floor_seconds(
    centralized_bytes: float, all_bytes: float, times2_seconds: float
) -> float:
    """The least time the backend's own ops can give an unfused GC pass.

    Args:
        centralized_bytes: Total bytes of the gradients the pass centralizes.
        all_bytes: Total bytes of the gradients `g * 2` ran on.
        times2_seconds: The time of `g * 2` (a read and a write of each
            tensor: one copy) on all of them, the backend's cheapest
            per-tensor op.

    Returns:
        The seconds of `PASS_COPIES` copies of `centralized_bytes` at the
        bandwidth of `g * 2`.
    """
    return PASS_COPIES * times2_seconds * centralized_bytes / all_bytes


def per_kernel_seconds(seconds: float, floor_seconds: float, kernels: int) -> float:
    """A pass's fixed cost per kernel: its time over its memory floor, per kernel.

    Negative when the pass beats the single-threaded copy it is measured
    against (several threads share the work).
    """
    return (seconds - floor_seconds) / kernels


def at_most(value: float, target: float) -> str:
    """`"met"` when `value <= target`, else `"missed"`."""
    return "met" if value <= target else "missed"


def sizes(shapes: Iterable[tuple[int, ...]], itemsize: int = 4) -> tuple[int, int]:
    """Total elements and bytes of tensors of these shapes.

    Example:

    >>> sizes([(3, 3, 16, 32), (512, 1)])
    (5120, 20480)
    """
    elements = sum(math.prod(shape) for shape in shapes)
    return elements, elements * itemsize
