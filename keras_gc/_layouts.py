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
    return isinstance(layer, _CONVS) and name_of(variable) != "bias"


def skip_reason(
    variable: Any, layer: layers.Layer | None, shape: tuple[int, ...]
) -> str | None:
    """Why the built-in rules leave a variable alone, or `None` for a kernel."""
    name = name_of(variable)
    if isinstance(layer, layers.Embedding) or name == "embeddings":
        return "embedding table: GC would move rows of tokens not in the batch"
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
    rank = len(shape)
    if layer is None:
        return "no Keras layer owns it: last axis is the output", (rank - 1,)
    kind = type(layer).__name__
    if isinstance(layer, _TRANSPOSED_CONVS):
        return f"{kind} kernel: output axis -2", (rank - 2,)
    if isinstance(layer, _DEPTHWISE_CONVS) or (
        isinstance(layer, _SEPARABLE_CONVS) and name_of(variable) == "depthwise_kernel"
    ):
        return f"{kind} depthwise kernel: spatial axes reduced", (rank - 2, rank - 1)
    if isinstance(layer, layers.EinsumDense) and name_of(variable) == "kernel":
        inputs, output = layer.equation.split("->")
        kernel = inputs.split(",")[1]
        kept = tuple(i for i, letter in enumerate(kernel) if letter in output)
        return f"EinsumDense {layer.equation!r}: kernel axes in the output", kept
    return f"{kind} {name_of(variable)}: last axis is the output", (rank - 1,)


def name_of(variable: Any) -> str:
    """The variable's own name, the last part of its path."""
    return str(variable.path).rsplit("/", 1)[-1]
