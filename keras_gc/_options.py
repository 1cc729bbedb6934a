"""The options of Gradient Centralization: one validated, frozen object."""

import dataclasses
import json
import re
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypedDict

import keras

from keras_gc import _compat
from keras_gc._clipping import check_positive
from keras_gc._maths import normalize_axes

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
            paper's GCC variant), the input and recurrent kernels of
            `ConvLSTM1D/2D/3D` included. A variable no layer owns counts as a
            convolution kernel when its rank is at least 3.
        include: If given, only variables matching one of these patterns are
            centralized. A pattern is a regex searched in `variable.path` (as
            in Keras' `exclude_from_weight_decay`) or a predicate on the
            variable; give one or a non-empty list. Functions are saved as
            Keras saves a `Lambda` layer's; an optimizer refuses one that
            cannot be saved.
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

    def check_savable(self) -> None:
        """Raises `TypeError` if a function among the options cannot be saved.

        `model.save` truncates its file before it asks for the optimizer's
        config, so an optimizer checks its options when it is given them.
        """
        for name in ("include", "exclude", "output_axes", "agc_head"):
            _check_savable(name, getattr(self, name))

    def get_config(self) -> dict[str, Any]:
        """Returns the options as JSON-friendly values.

        A function is saved as Keras saves a `Lambda` layer's: a lambda as its
        code (loaded only with `safe_mode=False`), a named function by its
        registered name (`keras.saving.register_keras_serializable`, or
        `custom_objects` when loading).
        """
        config = {field.name: getattr(self, field.name) for field in _FIELDS}
        for name in ("include", "exclude", "output_axes", "agc_head"):
            value = config[name]
            if value is False:
                continue
            if callable(value):
                config[name] = _serialize_function(value)
            elif isinstance(value, Mapping):
                config[name] = {
                    key: axes if isinstance(axes, int) else list(axes)
                    for key, axes in value.items()
                }
            elif value is not None:
                config[name] = [
                    _serialize_function(p) if callable(p) else p for p in value
                ]
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


def load_functions(config: Mapping[str, Any], custom_objects: Any = None) -> dict:
    """A config of `Options.get_config`, its saved functions loaded back."""
    config = dict(config)
    for name in ("include", "exclude", "agc_head"):
        if isinstance(config.get(name), list):
            config[name] = [
                _deserialize_function(p, custom_objects) if _is_function(p) else p
                for p in config[name]
            ]
    if _is_function(config.get("output_axes")):
        config["output_axes"] = _deserialize_function(
            config["output_axes"], custom_objects
        )
    return config


def _serialize_function(function: Callable[..., Any]) -> Any:
    """Saves a function as `keras.layers.Lambda` saves its own."""
    if isinstance(function, types.LambdaType) and function.__name__ == "<lambda>":
        return {
            "class_name": "__lambda__",
            "config": {"value": _compat.func_dump(function)},
        }
    return keras.saving.serialize_keras_object(function)


def _is_function(value: Any) -> bool:
    """Whether a config value is a saved function (a regex is a string, and a
    mapping of output axes holds no string values)."""
    return isinstance(value, dict) and isinstance(value.get("class_name"), str)


def _deserialize_function(config: Any, custom_objects: Any) -> Any:
    # Keras refuses a saved lambda unless `safe_mode=False` was asked for.
    return keras.saving.deserialize_keras_object(config, custom_objects=custom_objects)


def _check_savable(name: str, value: Any) -> None:
    functions = [value] if callable(value) else []
    if isinstance(value, tuple):
        functions = [p for p in value if callable(p)]
    for function in functions:
        try:
            json.dumps(
                keras.saving.serialize_keras_object(_serialize_function(function))
            )
        except Exception as error:
            raise TypeError(
                f"`{name}` holds {function!r}, which cannot be saved with the "
                f"model ({error}). Use a `def` or `lambda` whose closure holds "
                "only numbers, strings and lists of these, or a function "
                "registered with `keras.saving.register_keras_serializable`."
            ) from None


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
    if isinstance(value, bytes | bytearray):
        raise TypeError(
            f"`{name}` must be a regex string (str), a predicate on the variable, "
            f"or a list of these; received the bytes {value!r}. Decode them "
            f"first: {name}={bytes(value).decode(errors='replace')!r}."
        )
    items = (value,) if isinstance(value, str) or callable(value) else value
    if not isinstance(items, Sequence):
        raise TypeError(
            f"`{name}` must be a regex string, a predicate on the variable, or a "
            f"list of these; received {value!r}."
        )
    if name == "include" and not items:
        # Python reads an empty list as "no filter", the option as "only these":
        # either way the user would not get what they asked for without a word.
        raise ValueError(
            "`include` is empty, so no variable would be centralized. Pass "
            "`include=None` (the default) for the built-in rules, or patterns "
            "naming the variables to centralize."
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
    checked = {}
    for pattern, axes in value.items():
        # The rank is known only per variable: the plan checks the range.
        kept = normalize_axes(axes, name=f"`output_axes[{pattern!r}]`")
        # One axis given as an int stays an int, as configs have saved it.
        checked[pattern] = kept if isinstance(axes, Sequence) else kept[0]
    return types.MappingProxyType(checked)
