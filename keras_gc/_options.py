"""The options of Gradient Centralization: one validated, frozen object."""

import dataclasses
import re
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypedDict

from keras_gc._clipping import check_positive

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

MODES = ("gradient", "update")


@dataclasses.dataclass(frozen=True)
class Options:
    """What Gradient Centralization touches, and how: checked once, then fixed.

    `keras_gc.wrap`, `keras_gc.GradientCentralizationOptimizer`,
    `keras_gc.plan` and the constructors of `keras_gc.optimizers` take these
    as keyword arguments; a built optimizer keeps them as `optimizer.options`
    and saves them in its config.

    Attributes:
        conv_only: If `True`, only convolution kernels are centralized (the
            paper's GCC variant). A variable no layer owns counts as a
            convolution kernel when its rank is at least 3.
        include: If given, only variables matching one of these patterns are
            centralized. A pattern is a regex searched in `variable.path` (as
            in Keras' `exclude_from_weight_decay`) or a predicate on the
            variable; give one or a list.
        exclude: Variables matching one of these patterns are left alone. It
            takes precedence over `include`.
        output_axes: Overrides the output axes (the axes kept, one mean per
            index along them): a mapping from path regex to axes (first match
            wins), or a function of the variable that returns the axes, or
            `None` for the built-in rules. An override also applies to
            variables the rules would leave alone, such as embeddings.
        mode: `"gradient"` (default) centralizes the gradient before the
            inner optimizer sees it, as in the paper. `"update"` lets the
            inner optimizer compute its step from the raw gradient and
            centralizes the weight change it made (the official code's
            `gc_loc=False`, which its authors recommend for Adam-like
            optimizers); each kernel's per-output mean then stays fixed with
            any inner optimizer. Plans are the same in both modes.
        gc: If `False`, no gradient is centralized, so that adaptive
            gradient clipping (`agc`) runs alone. `True` by default.
        agc: $\\lambda$ of adaptive gradient clipping (AGC), greater than 0:
            each unit of a planned kernel (one index along its output axes)
            has its gradient scaled down to at most $\\lambda$ times its
            weight norm, before GC and before the inner optimizer, in both
            modes. `None` (default) turns AGC off. See `keras_gc.adaptive_clip`.
        agc_eps: $\\epsilon$ of AGC, the smallest weight norm counted
            (default 1e-3, as in NFNets); greater than 0.
        agc_head: The final classifier, whose kernels AGC leaves alone as
            NFNets does. `None` (default) finds it from the model's outputs
            (see `keras_gc.plan`); `False` clips every planned kernel; a
            regex on `variable.path` or a predicate on the variable (or a
            list of these) names the head's variables instead.

    Examples:
        >>> keras_gc.Options(exclude="head", mode="update").exclude
        ('head',)
    """

    conv_only: bool = False
    include: Patterns = None
    exclude: Patterns = None
    output_axes: OutputAxes = None
    mode: str = "gradient"
    gc: bool = True
    agc: float | None = None
    agc_eps: float = 1e-3
    agc_head: Patterns | bool = None

    def __post_init__(self) -> None:
        if not isinstance(self.conv_only, bool):
            raise TypeError(f"`conv_only` must be a bool; received {self.conv_only!r}.")
        if self.mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}; received {self.mode!r}.")
        # Tuples and read-only mappings, so that later changes to the caller's
        # list or dict cannot bypass the checks.
        object.__setattr__(self, "include", _patterns("include", self.include))
        object.__setattr__(self, "exclude", _patterns("exclude", self.exclude))
        object.__setattr__(self, "output_axes", _output_axes(self.output_axes))
        _check_agc(self)
        if not isinstance(self.agc_head, bool):
            object.__setattr__(self, "agc_head", _patterns("agc_head", self.agc_head))

    def get_config(self) -> dict[str, Any]:
        """Returns the options as JSON-friendly values.

        Raises:
            ValueError: If an option holds a Python function, which a config
                cannot hold.
        """
        config = {field.name: getattr(self, field.name) for field in _FIELDS}
        for name in ("include", "exclude", "output_axes", "agc_head"):
            value = config[name]
            if value is False:
                continue
            if callable(value) or any(callable(p) for p in value or ()):
                raise ValueError(
                    f"`{name}` holds a Python function, which cannot be saved in "
                    "the optimizer's config. Use regex strings on `variable.path` "
                    "instead."
                )
            if isinstance(value, Mapping):
                config[name] = {
                    key: axes if isinstance(axes, int) else list(axes)
                    for key, axes in value.items()
                }
            elif value is not None:
                config[name] = list(value)
        return config

    def patterns(self, name: str) -> tuple[Pattern, ...]:
        """The `include` or `exclude` patterns, as a tuple (empty for `None`)."""
        value = getattr(self, name)
        return () if value is None or value is False else tuple(value)

    def first_match(self, name: str, variable: Any) -> str | None:
        """Names the first `include` or `exclude` pattern matching `variable`."""
        for pattern in self.patterns(name):
            if isinstance(pattern, str):
                if re.search(pattern, variable.path):
                    return repr(pattern)
            elif pattern(variable):
                return getattr(pattern, "__name__", repr(pattern))
        return None

    def output_axes_for(self, variable: Any) -> tuple[str, Any] | None:
        """The override of `variable`'s output axes, and where it comes from."""
        value = self.output_axes
        if value is None:
            return None
        if callable(value):
            axes = value(variable)
            return None if axes is None else ("output_axes function", axes)
        for pattern, axes in value.items():
            if re.search(pattern, variable.path):
                return f"output_axes[{pattern!r}]", axes
        return None


class OptionsKwargs(TypedDict, total=False):
    """`Options` as keyword arguments, for type checkers."""

    conv_only: bool
    include: Patterns
    exclude: Patterns
    output_axes: OutputAxes
    mode: str
    gc: bool
    agc: float | None
    agc_eps: float
    agc_head: Patterns | bool


_FIELDS = dataclasses.fields(Options)
NAMES = tuple(field.name for field in _FIELDS)


# Arguments of the base optimizer, which belong on the inner optimizer.
_INNER_ARGUMENTS = (
    "learning_rate",
    "weight_decay",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "loss_scale_factor",
    "gradient_accumulation_steps",
)


def options_from(kwargs: Mapping[str, Any], caller: str) -> Options:
    """`Options(**kwargs)`, with errors that say what `caller` accepts."""
    misplaced = [key for key in kwargs if key in _INNER_ARGUMENTS]
    if misplaced:
        raise ValueError(
            f"{caller} does not take `{'`, `'.join(misplaced)}`: set it on the "
            "inner optimizer, e.g. "
            f"`keras_gc.wrap(keras.optimizers.Adam({misplaced[0]}=...))`."
        )
    unknown = [key for key in kwargs if key not in NAMES]
    if unknown:
        raise TypeError(
            f"{caller} got unexpected arguments `{'`, `'.join(unknown)}`. Its "
            f"Gradient Centralization options are `{'`, `'.join(NAMES)}`."
        )
    return Options(**kwargs)


def _check_agc(options: Options) -> None:
    """Checks the adaptive gradient clipping options, and that one of GC and
    AGC is on."""
    if not isinstance(options.gc, bool):
        raise TypeError(f"`gc` must be a bool; received {options.gc!r}.")
    if options.agc is not None:
        check_positive("agc", options.agc)
    check_positive("agc_eps", options.agc_eps)
    if options.agc_head is True:
        raise ValueError(
            "`agc_head` takes None (find the final classifier), False (clip "
            "every kernel) or patterns naming the head's variables; received True."
        )
    if not options.gc and options.agc is None:
        raise ValueError(
            "`gc=False` with `agc=None` leaves nothing to do: give `agc` (e.g. "
            "`agc=0.01`) to clip without centralizing, or keep `gc=True`."
        )


def _patterns(name: str, value: Patterns) -> tuple[Pattern, ...] | None:
    if value is None:
        return None
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


def _output_axes(value: OutputAxes) -> OutputAxes:
    if value is None or callable(value):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(
            "`output_axes` must be a mapping {path regex: axes}, a function of the "
            f"variable returning axes, or None; received {value!r}."
        )
    _patterns("output_axes", list(value))
    for pattern, axes in value.items():
        items = (axes,) if isinstance(axes, int) else axes
        if not isinstance(items, Sequence) or not all(
            isinstance(a, int) for a in items
        ):
            raise TypeError(
                f"`output_axes[{pattern!r}]` must be an int or a sequence of ints; "
                f"received {axes!r}."
            )
    return types.MappingProxyType(
        {
            key: axes if isinstance(axes, int) else tuple(axes)
            for key, axes in value.items()
        }
    )
