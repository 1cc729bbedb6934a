"""Which variables Gradient Centralization touches, and along which axes.

Everything here is decided once, from each variable's path, shape, dtype and
the Keras layer that owns it; nothing is decided per step.
"""

import dataclasses
import gc
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeAlias

import keras
from keras import backend, layers

from keras_gc._centralize import centralize_all

Pattern: TypeAlias = str | Callable[[Any], bool]
"""A regex searched in `variable.path`, or a predicate on the variable."""

Patterns: TypeAlias = Pattern | Sequence[Pattern] | None

OutputAxes: TypeAlias = (
    Mapping[str, int | Sequence[int]]
    | Callable[[Any], int | Sequence[int] | None]
    | None
)
"""`{path regex: output axes}` (first match wins), or a function of the
variable returning its output axes, or `None` to keep the built-in rules."""

_NORMALIZATION_LAYERS = (
    layers.BatchNormalization,
    layers.LayerNormalization,
    layers.GroupNormalization,
    layers.RMSNormalization,
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


@dataclasses.dataclass(frozen=True)
class VariablePlan:
    """What Gradient Centralization does to one variable.

    Attributes:
        path: The variable's `path`.
        shape: The variable's shape.
        layer: Class name of the Keras layer that owns the variable, or
            `None` when no live layer owns it.
        output_axes: The axes that are kept (one mean per index along them),
            or `None` when the variable is left alone.
        axes: The axes the gradient is averaged over, or `None` when the
            variable is left alone.
        reason: The rule that decided, in words.
    """

    path: str
    shape: tuple[int, ...]
    layer: str | None
    output_axes: tuple[int, ...] | None
    axes: tuple[int, ...] | None
    reason: str

    @property
    def centralized(self) -> bool:
        """Whether this variable's gradient is centralized."""
        return self.axes is not None


@dataclasses.dataclass(frozen=True)
class Plan(Sequence[VariablePlan]):
    """The Gradient Centralization decision for each variable of a list.

    A `Plan` is a sequence of `VariablePlan`, one per variable, in the order
    of the variables it was made from. `print(plan)` shows them as a table.

    Attributes:
        unmatched_include: Patterns of the `include` option that matched no
            variable.
    """

    entries: tuple[VariablePlan, ...]
    unmatched_include: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[VariablePlan]:
        return iter(self.entries)

    def __getitem__(self, index: Any) -> Any:
        return self.entries[index]

    def centralize(
        self,
        gradients: Sequence[Any],
        indices: Sequence[int] | None = None,
        *,
        in_place: bool = False,
    ) -> list[Any]:
        """Centralizes a list of gradients according to this plan.

        Args:
            gradients: One gradient (or `None`) per variable of the plan, in
                order; or, with `indices`, one per index.
            indices: Optional positions in the plan of the variables that
                `gradients` belong to.
            in_place: PyTorch only: overwrite the gradients instead of
                returning new tensors, as `torch.nn.utils.clip_grad_norm_`
                does (for a loop that hands `param.grad` to a torch
                optimizer, it saves a copy of every kernel's gradient).
                JAX and TensorFlow tensors are immutable: `True` raises
                there.

        Returns:
            The list of gradients, centralized where the plan says so.
            `None` and sparse (`tf.IndexedSlices`) gradients pass through.
        """
        return self._centralize(gradients, indices, [in_place] * len(gradients))

    def _centralize(
        self,
        gradients: Sequence[Any],
        indices: Sequence[int] | None,
        in_place: Sequence[bool],
    ) -> list[Any]:
        """`centralize`, overwriting the gradients that `in_place` marks."""
        entries = (
            self.entries if indices is None else [self.entries[i] for i in indices]
        )
        if len(gradients) != len(entries):
            raise ValueError(
                f"Expected {len(entries)} gradients, one per planned variable, "
                f"but received {len(gradients)}."
            )
        chosen: list[int] = []
        axes: list[tuple[int, ...]] = []
        for i, (gradient, entry) in enumerate(zip(gradients, entries, strict=True)):
            if entry.axes is None or gradient is None or _skip_sparse(gradient, entry):
                continue
            chosen.append(i)
            axes.append(entry.axes)
        result = list(gradients)
        centered = centralize_all(
            [gradients[i] for i in chosen], axes, [in_place[i] for i in chosen]
        )
        for i, gradient in zip(chosen, centered, strict=True):
            result[i] = gradient
        return result

    def __str__(self) -> str:
        rows = [("path", "shape", "layer", "GC", "output axes", "reason")]
        for e in self.entries:
            rows.append(
                (
                    e.path,
                    str(e.shape),
                    e.layer or "-",
                    "yes" if e.centralized else "no",
                    "-" if e.output_axes is None else str(e.output_axes),
                    e.reason,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
            + "  "
            + row[-1]
            for row in rows
        ]
        centralized = [e for e in self.entries if e.centralized]
        size = sum(math.prod(e.shape) for e in self.entries)
        gc_size = sum(math.prod(e.shape) for e in centralized)
        lines.append(
            f"Gradient Centralization on {len(centralized)} of {len(self.entries)} "
            f"variables ({gc_size:,} of {size:,} parameters)."
        )
        if self.unmatched_include:
            lines.append(
                f"include patterns that match nothing: {self.unmatched_include}"
            )
        return "\n".join(lines)


def _skip_sparse(gradient: Any, entry: VariablePlan) -> bool:
    """Whether a gradient is sparse, which GC leaves alone, saying so."""
    if type(gradient).__name__ != "IndexedSlices":
        return False
    warnings.warn(
        f"The gradient of `{entry.path}` is sparse (tf.IndexedSlices) and is "
        "left uncentralized. Densify it (`tf.convert_to_tensor`) to "
        "centralize it.",
        stacklevel=4,
    )
    return True


def plan(
    target: Any,
    *,
    conv_only: bool = False,
    include: Patterns = None,
    exclude: Patterns = None,
    output_axes: OutputAxes = None,
) -> Plan:
    """Decides, for each variable, whether and how its gradient is centralized.

    The built-in rules follow the Keras kernel layouts: the output axis is the
    last one for `Dense`, `Conv1D/2D/3D`, `SeparableConv` pointwise and RNN
    kernels; -2 for `Conv*Transpose`; the last two for depthwise kernels; the
    kernel axes that appear in the output of an `EinsumDense` equation (which
    covers `MultiHeadAttention`). Variables of rank 0 or 1, biases,
    normalization parameters, embedding tables (GC would move the rows of
    tokens that are not in the batch), non-float or non-trainable variables
    and variables whose reduced size is 1 (GC would zero their gradient) are
    left alone. A variable of rank >= 2 that no known layer owns keeps its last
    axis as the output axis.

    Args:
        target: A Keras layer or model (its `trainable_variables` are
            planned) or a sequence of variables.
        conv_only: If `True`, only convolution kernels are centralized
            (the paper's GCC variant). A variable no layer owns counts as a
            convolution kernel when its rank is at least 3.
        include: If given, only variables matching one of these patterns are
            centralized. A pattern is a regex searched in `variable.path` (as
            Keras' `exclude_from_weight_decay`) or a predicate on the variable.
        exclude: Variables matching one of these patterns are left alone.
            It takes precedence over `include`.
        output_axes: Overrides the output axes: a mapping from path regex to
            the axes to keep (first match wins), or a function of the variable
            that returns the axes to keep, or `None` to use the built-in rules.
            An override also applies to variables the rules would leave alone,
            such as embeddings.

    Returns:
        A `Plan`; `print(plan)` shows every variable with its shape, its
        layer, whether it is centralized, along which axes, and why.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> [(e.shape, e.centralized, e.reason) for e in keras_gc.plan(model)]
    [((4, 3), True, 'Dense kernel: last axis is the output'), ((3,), False, 'bias')]
    """
    variables = _variables_of(target)
    includes = _patterns("include", include)
    excludes = _patterns("exclude", exclude)
    overrides = _output_axes_rules(output_axes)
    owners = _owning_layers(variables)
    entries = tuple(
        _plan_variable(v, owners.get(id(v)), conv_only, includes, excludes, overrides)
        for v in variables
    )
    unmatched = tuple(
        p
        for p in includes
        if isinstance(p, str) and not any(re.search(p, v.path) for v in variables)
    )
    return Plan(entries, unmatched)


def centralize_gradients(
    gradients: Sequence[Any], variables: Sequence[Any], **options: Any
) -> list[Any]:
    """Centralizes gradients by the rules `keras_gc.wrap` uses.

    For custom training loops. It plans on every call; in a loop, make the
    plan once with `keras_gc.plan(variables, **options)` and call its
    `centralize(gradients)` instead.

    Args:
        gradients: One gradient (or `None`) per variable.
        variables: The variables the gradients belong to.
        **options: The options of `keras_gc.plan`.

    Returns:
        The list of gradients, centralized where the rules say so.
    """
    return plan(variables, **options).centralize(gradients)


def _variables_of(target: Any) -> list[Any]:
    if isinstance(target, layers.Layer):
        return list(target.trainable_variables)
    if isinstance(target, Sequence) and all(
        isinstance(v, keras.Variable) for v in target
    ):
        return list(target)
    raise TypeError(
        "Expected a Keras layer or model, or a sequence of `keras.Variable`; "
        f"received {target!r} of type {type(target).__name__}."
    )


def _patterns(name: str, value: Patterns) -> tuple[Pattern, ...]:
    if value is None:
        return ()
    items = (value,) if isinstance(value, str) or callable(value) else value
    if not isinstance(items, Sequence):
        raise TypeError(
            f"`{name}` must be a regex string, a predicate on the variable, or a "
            f"list of these; received {value!r}."
        )
    for item in items:
        if isinstance(item, str):
            try:
                re.compile(item)
            except re.error as error:
                raise ValueError(
                    f"`{name}` pattern {item!r} is not a valid regex: {error}."
                ) from None
        elif not callable(item):
            raise TypeError(
                f"`{name}` must hold regex strings or predicates on the variable; "
                f"received {item!r} of type {type(item).__name__}."
            )
    return tuple(items)


def _output_axes_rules(
    value: OutputAxes,
) -> Callable[[Any], tuple[str, int | Sequence[int]] | None]:
    if value is None:
        return lambda variable: None
    if callable(value):
        function = value

        def by_function(variable: Any) -> tuple[str, int | Sequence[int]] | None:
            axes = function(variable)
            return None if axes is None else ("output_axes function", axes)

        return by_function
    if not isinstance(value, Mapping):
        raise TypeError(
            "`output_axes` must be a mapping {path regex: axes}, a function of the "
            f"variable returning axes, or None; received {value!r}."
        )
    _patterns("output_axes", list(value))
    rules = dict(value)

    def by_pattern(variable: Any) -> tuple[str, int | Sequence[int]] | None:
        for pattern, axes in rules.items():
            if re.search(pattern, variable.path):
                return f"output_axes[{pattern!r}]", axes
        return None

    return by_pattern


def _owning_layers(variables: Sequence[Any]) -> dict[int, layers.Layer]:
    """Maps `id(variable)` to the live Keras layer that created it.

    Keras variables do not point back to their layer, and optimizers are
    built from bare variable lists, so the layers are found among the live
    objects; this runs once per build. A model holds its layers' variables
    too: the owner is the holder named in the variable's path
    (`.../<layer name>/<variable name>`), else the holder with fewest weights.
    """
    if not variables:
        return {}
    wanted = {id(v): _parent(v) for v in variables}
    owners: dict[int, tuple[tuple[bool, int], layers.Layer]] = {}
    for obj in gc.get_objects():
        # type() rather than isinstance: some module proxies warn on __class__.
        if not issubclass(type(obj), layers.Layer):
            continue
        weights = obj.weights
        for weight in weights:
            key = id(weight)
            if key not in wanted:
                continue
            rank = (obj.name != wanted[key], len(weights))
            if key not in owners or rank < owners[key][0]:
                owners[key] = (rank, obj)
    return {key: layer for key, (_, layer) in owners.items()}


def _plan_variable(
    variable: Any,
    layer: layers.Layer | None,
    conv_only: bool,
    includes: tuple[Pattern, ...],
    excludes: tuple[Pattern, ...],
    overrides: Callable[[Any], tuple[str, int | Sequence[int]] | None],
) -> VariablePlan:
    shape = tuple(int(d) for d in variable.shape)

    def entry(reason: str, output: tuple[int, ...] | None = None) -> VariablePlan:
        axes = None
        if output is not None:
            axes = tuple(i for i in range(len(shape)) if i not in output)
            reduced = math.prod(shape[i] for i in axes)
            if reduced == 0:
                output, axes, reason = None, None, "empty: nothing to centralize"
            elif reduced == 1:
                output, axes, reason = (
                    None,
                    None,
                    f"{reason}, but the reduced size is 1: GC would zero the gradient",
                )
        return VariablePlan(
            variable.path,
            shape,
            type(layer).__name__ if layer is not None else None,
            output,
            axes,
            reason,
        )

    if not variable.trainable:
        return entry("not trainable")
    if not backend.is_float_dtype(variable.dtype):
        return entry(f"not a float variable ({variable.dtype})")
    matched = _first_match(variable, excludes)
    if matched is not None:
        return entry(f"excluded by {matched}")
    if includes and _first_match(variable, includes) is None:
        return entry("not matched by include")
    if conv_only and not _is_conv_kernel(variable, layer, shape):
        return entry("conv_only: not a convolution kernel")
    override = overrides(variable)
    if override is not None:
        source, axes = override
        return entry(source, _normalize_axes(variable.path, shape, axes, source))
    skip = _skip_reason(variable, layer, shape)
    if skip is not None:
        return entry(skip)
    rule, output = _layout(variable, layer, shape)
    return entry(rule, output)


def _first_match(variable: Any, patterns: tuple[Pattern, ...]) -> str | None:
    for pattern in patterns:
        if isinstance(pattern, str):
            if re.search(pattern, variable.path):
                return repr(pattern)
        elif pattern(variable):
            return getattr(pattern, "__name__", repr(pattern))
    return None


def _is_conv_kernel(
    variable: Any, layer: layers.Layer | None, shape: tuple[int, ...]
) -> bool:
    if layer is None:
        return len(shape) >= 3
    return isinstance(layer, _CONVS) and _name(variable) != "bias"


def _skip_reason(
    variable: Any, layer: layers.Layer | None, shape: tuple[int, ...]
) -> str | None:
    if isinstance(layer, layers.Embedding) or _name(variable) == "embeddings":
        return "embedding table: GC would move rows of tokens not in the batch"
    if isinstance(layer, _NORMALIZATION_LAYERS) or _name(variable) in (
        "gamma",
        "beta",
    ):
        return "normalization parameter"
    if _name(variable) == "bias":
        return "bias"
    if len(shape) < 2:
        return f"rank {len(shape)}: not a kernel"
    return None


def _layout(
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
        isinstance(layer, _SEPARABLE_CONVS) and _name(variable) == "depthwise_kernel"
    ):
        return f"{kind} depthwise kernel: spatial axes reduced", (rank - 2, rank - 1)
    if isinstance(layer, layers.EinsumDense) and _name(variable) == "kernel":
        inputs, output = layer.equation.split("->")
        kernel = inputs.split(",")[1]
        kept = tuple(i for i, letter in enumerate(kernel) if letter in output)
        return f"EinsumDense {layer.equation!r}: kernel axes in the output", kept
    return f"{kind} {_name(variable)}: last axis is the output", (rank - 1,)


def _name(variable: Any) -> str:
    return str(variable.path).rsplit("/", 1)[-1]


def _parent(variable: Any) -> str:
    return "".join(str(variable.path).rsplit("/", 2)[-2:-1])


def _normalize_axes(
    path: str, shape: tuple[int, ...], axes: int | Sequence[int], source: str
) -> tuple[int, ...]:
    items = (axes,) if isinstance(axes, int) else tuple(axes)
    rank = len(shape)
    if not all(isinstance(a, int) and -rank <= a < rank for a in items):
        raise ValueError(
            f"{source} gives output axes {axes!r} for `{path}` of shape {shape}; "
            f"axes must be ints in [-{rank}, {rank})."
        )
    normalized = tuple(sorted({a % rank for a in items}))
    if len(normalized) == rank:
        raise ValueError(
            f"{source} gives output axes {axes!r} for `{path}` of shape {shape}: "
            "that keeps every axis, so there is nothing to average over. Keep "
            "fewer axes, or exclude the variable."
        )
    return normalized
