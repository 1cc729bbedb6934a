"""Which variables Gradient Centralization touches, and along which axes.

Everything here is decided once, from each variable's path, shape, dtype and
the Keras layer that owns it; nothing is decided per step.
"""

import dataclasses
import functools
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Unpack

from keras import backend, layers

from keras_gc import _compat, _layouts
from keras_gc._clipping import clip_planned
from keras_gc._head import plan_clipping
from keras_gc._maths import normalize_axes
from keras_gc._options import Options, OptionsKwargs, options_from
from keras_gc._owners import find_owners, owners_in
from keras_gc._plan_table import plan_table
from keras_gc.backend import subtract_means


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
        agc_axes: The axes each unit's norm is taken over by adaptive
            gradient clipping (those GC averages over, also when `gc=False`),
            or `None` when AGC leaves the variable alone.
    """

    path: str
    shape: tuple[int, ...]
    layer: str | None
    output_axes: tuple[int, ...] | None
    axes: tuple[int, ...] | None
    reason: str
    agc_axes: tuple[int, ...] | None = None

    @property
    def centralized(self) -> bool:
        """Whether this variable's gradient is centralized."""
        return self.axes is not None

    @property
    def clipped(self) -> bool:
        """Whether adaptive gradient clipping applies to this variable."""
        return self.agc_axes is not None


@dataclasses.dataclass(frozen=True)
class Plan(Sequence[VariablePlan]):
    """The Gradient Centralization decision for each variable of a list.

    A `Plan` is a sequence of `VariablePlan`, one per variable, in the order
    of the variables it was made from. `print(plan)` shows them as a table.

    Attributes:
        unmatched_include: Patterns of the `include` option that matched no
            variable.
        agc: $\\lambda$ of adaptive gradient clipping, or `None` when off.
        agc_eps: $\\epsilon$ of adaptive gradient clipping.
    """

    entries: tuple[VariablePlan, ...]
    unmatched_include: tuple[str, ...] = ()
    agc: float | None = None
    agc_eps: float = 1e-3

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
            gradients: A list or tuple with one gradient (or `None`) per
                variable of the plan, in order; or, with `indices`, one per
                index. Each gradient has its variable's shape.
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
            `None` gradients pass through. A sparse (`tf.IndexedSlices`)
            gradient of a centralized variable comes back dense.

        Raises:
            TypeError: If `gradients` is not a list or tuple of gradients
                (a generator, a dict, or `(gradient, variable)` pairs).
            ValueError: If the number of gradients, or a gradient's shape,
                does not match the plan.
        """
        if isinstance(gradients, str | Mapping) or not isinstance(gradients, Sequence):
            raise TypeError(
                "`gradients` must be a list or tuple with one gradient (or None) "
                "per planned variable; received a "
                f"{type(gradients).__name__}. Pass `list(generator)` for a "
                "generator, or a dict's gradients as a list in the plan's order."
            )
        return self._subtract_means(gradients, indices, [in_place] * len(gradients))

    def _subtract_means(
        self,
        gradients: Sequence[Any],
        indices: Sequence[int] | None,
        in_place: Sequence[bool],
    ) -> list[Any]:
        """`centralize`, overwriting the gradients that `in_place` marks."""
        expected = len(self.entries) if indices is None else len(indices)
        if len(gradients) != expected:
            raise ValueError(
                f"Expected {expected} gradients, one per planned variable, "
                f"but received {len(gradients)}."
            )
        shapes = self._shapes if indices is None else [self._shapes[i] for i in indices]
        # A variable's own `.grad` (marked `in_place`) has its shape: skip it.
        for position, (gradient, shape, own) in enumerate(
            zip(gradients, shapes, in_place, strict=True)
        ):
            if (
                gradient is not None
                and not own
                and getattr(gradient, "shape", None) != shape
            ):
                entry = self.entries[position if indices is None else indices[position]]
                _check_shape(position, gradient, entry)
        targets = self._targets if indices is None else self._targets_at(indices)
        chosen = [i for i, _ in targets if gradients[i] is not None]
        axes = [axis for i, axis in targets if gradients[i] is not None]
        result = list(gradients)
        centered = subtract_means(
            [gradients[i] for i in chosen], axes, [in_place[i] for i in chosen]
        )
        for i, gradient in zip(chosen, centered, strict=True):
            result[i] = gradient
        return result

    def clip(
        self,
        gradients: Sequence[Any],
        weights: Sequence[Any],
        indices: Sequence[int] | None = None,
    ) -> list[Any]:
        """Applies adaptive gradient clipping (`keras_gc.adaptive_clip`) where
        the plan says so; for AGC then GC, `centralize` the result.

        `gradients` and `indices` are as in `centralize`; `weights` are the
        variables (or their values) the gradients belong to, in their order.
        """
        return clip_planned(self, gradients, weights, indices)

    @functools.cached_property
    def _gc_after_agc(self) -> "Plan":
        """This plan without the kernels that AGC centralizes in its own pass."""
        entries = tuple(
            dataclasses.replace(e, axes=None) if e.clipped and e.centralized else e
            for e in self.entries
        )
        return dataclasses.replace(self, entries=entries)

    @functools.cached_property
    def _shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(entry.shape for entry in self.entries)

    @functools.cached_property
    def _targets(self) -> tuple[tuple[int, tuple[int, ...]], ...]:
        # Per step, only the centralized entries are visited.
        return self._targets_at(range(len(self.entries)))

    def _targets_at(
        self, indices: Sequence[int]
    ) -> tuple[tuple[int, tuple[int, ...]], ...]:
        """(position in `indices`, axes) of each centralized entry they name."""
        return tuple(
            (position, axes)
            for position, axes in enumerate(self.entries[i].axes for i in indices)
            if axes is not None
        )

    def __str__(self) -> str:
        return plan_table(self)


def warn_about(plan: Plan, name: str) -> None:
    """Warns when an optimizer's plan cannot be what its user asked for."""
    if plan.unmatched_include:
        warnings.warn(
            f"{name}: `include` patterns {list(plan.unmatched_include)} match no "
            "variable; see `optimizer.plan`.",
            stacklevel=3,
        )
    if plan.entries and not any(e.centralized or e.clipped for e in plan):
        warnings.warn(
            f"{name} centralizes none of its {len(plan)} trainable variables: no "
            "kernel is trainable (a quantized or frozen model without LoRA?) or "
            "the options leave every variable alone. `print(optimizer.plan)` "
            "says why for each variable.",
            stacklevel=3,
        )


def _check_shape(position: int, gradient: Any, entry: VariablePlan) -> None:
    """Raises if `gradient` cannot be the gradient of `entry`'s variable."""
    shape = getattr(gradient, "shape", None)
    if shape is None:
        raise TypeError(
            f"Gradient {position} (for `{entry.path}`) is a "
            f"{type(gradient).__name__}, not a tensor. "
            "Pass the gradients alone, one per variable; for (gradient, variable) "
            "pairs, `[g for g, _ in pairs]`."
        )
    dims = tuple(shape)
    # A traced TensorFlow gradient may have unknown (None) dimensions.
    if len(dims) != len(entry.shape) or any(
        d is not None and d != e for d, e in zip(dims, entry.shape, strict=True)
    ):
        raise ValueError(
            f"Gradient {position} has shape {dims}, but its variable "
            f"`{entry.path}` has shape {entry.shape}: each gradient must have "
            "its variable's shape, in the plan's order."
        )


def plan(target: Any, **options: Unpack[OptionsKwargs]) -> Plan:
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

    With `agc`, the plan also says which variables adaptive gradient clipping
    clips (`VariablePlan.clipped`): the kernels above, along the same axes,
    except the final classifier (see `agc_head` in `keras_gc.Options`).

    Args:
        target: A Keras layer or model (its `trainable_variables` are
            planned, and their layers are found in it) or a sequence of
            variables (their layers are found among the live layers).
        **options: The options of `keras_gc.Options`.

    Returns:
        A `Plan`; `print(plan)` shows every variable with its shape, its
        layer, whether it is centralized, along which axes, and why.

    Examples:
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> [(e.shape, e.centralized, e.reason) for e in keras_gc.plan(model)]
        [((4, 3), True, 'Dense kernel: last axis is the output'), ((3,), False, 'bias')]
    """
    return make_plan(target, options_from(options, "plan"))


def make_plan(target: Any, options: Options) -> Plan:
    """`plan`, with the options already checked."""
    variables = _variables_of(target)
    if isinstance(target, layers.Layer):
        owners = owners_in(target, variables)
    else:
        owners = find_owners(variables)
    entries = tuple(_plan_variable(v, owners.get(id(v)), options) for v in variables)
    unmatched = tuple(
        p
        for p in options.patterns("include")
        if isinstance(p, str) and not any(re.search(p, v.path) for v in variables)
    )
    entries = plan_clipping(target, variables, entries, options)
    return Plan(entries, unmatched, options.agc, options.agc_eps)


def _variables_of(target: Any) -> list[Any]:
    if isinstance(target, layers.Layer):
        if not target.built:
            raise ValueError(
                f"`{target.name}` is not built yet, so it has no variables to "
                "plan. Build it first: call it on a batch (`model(x)`), call "
                "`model.build(input_shape)`, or start it with `keras.Input`."
            )
        return list(target.trainable_variables)
    if isinstance(target, Sequence) and all(_compat.is_variable(v) for v in target):
        return list(target)
    raise TypeError(
        "Expected a Keras layer or model, or a sequence of `keras.Variable`; "
        f"received {target!r} of type {type(target).__name__}."
    )


def _plan_variable(
    variable: Any, layer: layers.Layer | None, options: Options
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
    matched = options.first_match("exclude", variable)
    if matched is not None:
        return entry(f"excluded by {matched}")
    if options.include and options.first_match("include", variable) is None:
        return entry("not matched by include")
    if options.conv_only and not _layouts.is_conv_kernel(variable, layer, shape):
        return entry("conv_only: not a convolution kernel")
    override = options.output_axes_for(variable)
    if override is not None:
        source, axes = override
        return entry(source, _output_axes(variable.path, shape, axes, source))
    skip = _layouts.skip_reason(variable, layer, shape)
    if skip is not None:
        return entry(skip)
    rule, output = _layouts.output_axes(variable, layer, shape)
    return entry(rule, output)


def _output_axes(
    path: str, shape: tuple[int, ...], axes: Any, source: str
) -> tuple[int, ...]:
    """The output axes an `output_axes` override gives a variable, checked."""
    kept = normalize_axes(
        axes,
        len(shape),
        name=f"{source} for `{path}`",
        subject=f"a variable of shape {shape}",
    )
    if len(kept) == len(shape):
        raise ValueError(
            f"{source} gives output axes {axes!r} for `{path}` of shape {shape}: "
            "that keeps every axis, so there is nothing to average over. Keep "
            "fewer axes, or exclude the variable."
        )
    return kept
