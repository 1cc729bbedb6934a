"""Keras 3 kernel layouts: which axes of a variable are its outputs.

Each rule reads the variable's shape and name and the class of the layer that
owns it, never the layer's name, so renamed layers keep their layout.
"""

from typing import Any

from keras import layers

from keras_gc import _compat

_NORMALIZATION_LAYERS = (
    layers.BatchNormalization,
    layers.LayerNormalization,
    layers.GroupNormalization,
    *_compat.layer_classes("RMSNormalization"),
)
_TRANSPOSED_CONVS = (
    layers.Conv1DTranspose,
    layers.Conv2DTranspose,
    layers.Conv3DTranspose,
)
_LORA_KERNEL_FACTORS = ("lora_kernel_a", "lora_kernel_b")
_LORA_EMBEDDING_FACTORS = ("lora_embeddings_a", "lora_embeddings_b")
_DEPTHWISE_CONVS = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
_SEPARABLE_CONVS = (layers.SeparableConv1D, layers.SeparableConv2D)
_CONVS = (
    layers.Conv1D,
    layers.Conv2D,
    layers.Conv3D,
    *_TRANSPOSED_CONVS,
    *_DEPTHWISE_CONVS,
    *_SEPARABLE_CONVS,
)


def is_conv_kernel(
    variable: Any, layer: layers.Layer | None, shape: tuple[int, ...]
) -> bool:
    """Whether a variable is a convolution kernel, for `conv_only`."""
    if layer is None:
        return len(shape) >= 3
    if name_of(variable) == "bias":
        return False
    # A ConvLSTM cell convolves both its input and its state: both its kernels
    # are convolution kernels. Keras does not export the cell's class.
    return isinstance(layer, _CONVS) or any(
        cls.__name__ == "ConvLSTMCell" for cls in type(layer).__mro__
    )


def skip_reason(
    variable: Any, layer: layers.Layer | None, shape: tuple[int, ...]
) -> str | None:
    """Why the built-in rules leave a variable alone, or `None` for a kernel."""
    name = name_of(variable)
    if isinstance(layer, layers.Embedding) or name == "embeddings":
        return "embedding table: GC would move rows of tokens not in the batch"
    if name in _LORA_EMBEDDING_FACTORS:
        return "LoRA factor of an embedding table: GC would move rows of tokens"
    if isinstance(layer, _NORMALIZATION_LAYERS) or name in ("gamma", "beta"):
        return "normalization parameter"
    if name == "bias":
        return "bias"
    if len(shape) < 2:
        return f"rank {len(shape)}: not a kernel"
    return None


def output_axes(
    variable: Any, layer: layers.Layer | None, shape: tuple[int, ...]
) -> tuple[str, tuple[int, ...]]:
    """Returns the rule's description and the output axes of a kernel."""
    name = name_of(variable)
    if name in _LORA_KERNEL_FACTORS:
        return _lora_output_axes(name, layer, shape)
    return _kernel_output_axes(name, layer, len(shape))


def _kernel_output_axes(
    name: str, layer: layers.Layer | None, rank: int
) -> tuple[str, tuple[int, ...]]:
    """The rule and output axes of the kernel `name` of rank `rank` in `layer`."""
    if layer is None:
        return "no Keras layer owns it: last axis is the output", (rank - 1,)
    kind = type(layer).__name__
    if isinstance(layer, _TRANSPOSED_CONVS):
        return f"{kind} kernel: output axis -2", (rank - 2,)
    if isinstance(layer, _DEPTHWISE_CONVS) or (
        isinstance(layer, _SEPARABLE_CONVS) and name == "depthwise_kernel"
    ):
        return f"{kind} depthwise kernel: spatial axes reduced", (rank - 2, rank - 1)
    if isinstance(layer, layers.EinsumDense) and name == "kernel":
        inputs, output = layer.equation.split("->")
        kernel = inputs.split(",")[1]
        kept = tuple(i for i, letter in enumerate(kernel) if letter in output)
        return f"EinsumDense {layer.equation!r}: kernel axes in the output", kept
    return f"{kind} {name}: last axis is the output", (rank - 1,)


def _lora_output_axes(
    name: str, layer: layers.Layer | None, shape: tuple[int, ...]
) -> tuple[str, tuple[int, ...]]:
    """The output axes of a LoRA factor, from its layer's kernel layout.

    `enable_lora(rank)` adds `lora_kernel_a`, shaped `kernel.shape[:-1] +
    (rank,)`, and `lora_kernel_b`, shaped `(rank, kernel.shape[-1])`, and the
    layer uses `kernel + scale * a @ b`. Each factor axis that carries a
    kernel axis is averaged exactly when GC averages that kernel axis (an
    input), so no factor is ever averaged over a kernel output axis. The rank
    axis joins the two factors: it is the output of a factor that carries
    kernel inputs, and the input of a factor that carries only kernel
    outputs.
    """
    is_a = name == "lora_kernel_a"
    kernel_rank = len(shape) if is_a else _lora_kernel_rank(layer)
    rule, kernel_outputs = _kernel_output_axes("kernel", layer, kernel_rank)
    # Factor axis -> the kernel axis it carries (None for the rank axis).
    carried = [*range(kernel_rank - 1), None] if is_a else [None, kernel_rank - 1]
    inputs = [
        i for i, k in enumerate(carried) if k is not None and k not in kernel_outputs
    ]
    rank_axis = carried.index(None)
    if inputs:
        kept = tuple(i for i in range(len(carried)) if i not in inputs)
        how = "averaged over the kernel input axes it carries"
    else:
        kept = tuple(i for i in range(len(carried)) if i != rank_axis)
        how = "carries kernel outputs only, averaged over its rank axis"
    factor = "A" if is_a else "B"
    return f"LoRA factor {factor} ({rule}): {how}", kept


def _lora_kernel_rank(layer: layers.Layer | None) -> int:
    """The rank of the frozen kernel a `lora_kernel_b` belongs to."""
    factor = getattr(layer, "lora_kernel_a", None)
    return 2 if factor is None else len(factor.shape)


def name_of(variable: Any) -> str:
    """The variable's own name, the last part of its path."""
    return str(variable.path).rsplit("/", 1)[-1]
