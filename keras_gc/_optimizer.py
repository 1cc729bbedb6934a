"""The optimizer wrapper that centralizes gradients before any Keras optimizer."""

import warnings
from collections.abc import Sequence
from typing import Any

import keras
from keras import backend, ops

from keras_gc._centralize import centralize
from keras_gc._plan import OutputAxes, Pattern, Patterns, Plan, VariablePlan, plan

MODES = ("gradient", "update")


def _skip_autograph(method: Any) -> Any:
    """Keeps TensorFlow's autograph from rewriting this pure-Python code.

    Inside a user's `tf.function`, autograph converts the code it calls unless
    it is Keras' own; its rewrite of plain Python loops breaks planning.
    """
    if keras.backend.backend() != "tensorflow":
        return method
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(method)


# Arguments of the base optimizer that belong on the inner optimizer.
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


@keras.saving.register_keras_serializable(package="keras_gc")
class GradientCentralizationOptimizer(keras.optimizers.Optimizer):
    """An optimizer that centralizes gradients before another optimizer uses them.

    Gradient Centralization (GC) subtracts from each kernel's gradient its mean
    over every axis except the kernel's output axes, so that each output unit's
    gradient has zero mean. With SGD, each output unit's weight vector then
    stays on the hyperplane it started on.

    The wrapped optimizer keeps all its features (learning-rate schedules,
    clipping, weight decay, EMA, gradient accumulation, loss scaling) and
    its fast paths: this wrapper only transforms the gradients, then hands
    them to `inner_optimizer.apply` (or `stateless_apply` under JAX `fit`).
    Which variables are centralized, and along which axes, is decided once
    when the optimizer is built; `optimizer.plan` shows it.

    Args:
        inner_optimizer: The `keras.optimizers.Optimizer` instance to wrap.
        conv_only: If `True`, only convolution kernels are centralized (the
            paper's GCC variant).
        include: If given, only variables matching one of these patterns are
            centralized: a regex searched in `variable.path`, a predicate on
            the variable, or a list of these.
        exclude: Variables matching one of these patterns are left alone.
        output_axes: Overrides the output axes of some variables: a mapping
            `{path regex: axes to keep}` or a function of the variable that
            returns the axes to keep (or `None` for the built-in rules).
        mode: `"gradient"` (default) centralizes the gradient before the
            inner optimizer sees it, as in the paper. `"update"` lets the inner
            optimizer compute its step from the raw gradient and centralizes
            the weight change it made (the official code's `gc_loc=False`,
            which its authors recommend for Adam-like optimizers); each kernel's
            per-output mean then stays fixed with any inner optimizer.
        name: String, the name of the optimizer.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> optimizer = keras_gc.GradientCentralizationOptimizer(
    ...     keras.optimizers.SGD(0.1, momentum=0.9)
    ... )
    >>> model.compile(optimizer=optimizer, loss="mse")

    Reference:
        Yong et al., "Gradient Centralization: A New Optimization Technique
        for Deep Neural Networks", ECCV 2020, https://arxiv.org/abs/2004.01461
    """

    def __init__(
        self,
        inner_optimizer: keras.optimizers.Optimizer,
        conv_only: bool = False,
        include: Patterns = None,
        exclude: Patterns = None,
        output_axes: OutputAxes = None,
        mode: str = "gradient",
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        misplaced = [key for key in kwargs if key in _INNER_ARGUMENTS]
        if misplaced:
            raise ValueError(
                f"{type(self).__name__} does not take `{'`, `'.join(misplaced)}`: "
                "set it on the inner optimizer, e.g. "
                f"`keras_gc.wrap(keras.optimizers.Adam({misplaced[0]}=...))`."
            )
        if kwargs:
            raise TypeError(
                f"{type(self).__name__} got unexpected arguments "
                f"`{'`, `'.join(kwargs)}`. It accepts `inner_optimizer`, "
                "`conv_only`, `include`, `exclude`, `output_axes`, `mode` and `name`."
            )
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                "`inner_optimizer` must be a Keras 3 optimizer instance, such as "
                f"`keras.optimizers.Adam(1e-3)`; received {inner_optimizer!r} of type "
                f"{type(inner_optimizer).__name__}. {_hint(inner_optimizer)}"
            )
        if isinstance(inner_optimizer, keras.optimizers.LossScaleOptimizer):
            raise ValueError(
                "Put Gradient Centralization inside the LossScaleOptimizer, "
                "`LossScaleOptimizer(GradientCentralizationOptimizer(inner))`, so "
                "that `compile` sees the loss scaler; `keras_gc.wrap` does this."
            )
        if isinstance(inner_optimizer, GradientCentralizationOptimizer):
            raise ValueError(
                "`inner_optimizer` already centralizes gradients; wrapping it again "
                "would do nothing more. Pass its `inner_optimizer` instead."
            )
        if not isinstance(conv_only, bool):
            raise TypeError(f"`conv_only` must be a bool; received {conv_only!r}.")
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}; received {mode!r}.")
        # Validates the options now rather than at the first training step.
        plan(
            [],
            conv_only=conv_only,
            include=include,
            exclude=exclude,
            output_axes=output_axes,
        )
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self.conv_only = conv_only
        self.include = include
        self.exclude = exclude
        self.output_axes = output_axes
        self.mode = mode
        self._plan: Plan | None = None

    @_skip_autograph
    def build(self, var_list: Sequence[Any]) -> None:
        self._plan = plan(
            var_list,
            conv_only=self.conv_only,
            include=self.include,
            exclude=self.exclude,
            output_axes=self.output_axes,
        )
        if self._plan.unmatched_include:
            warnings.warn(
                f"{self.name}: `include` patterns {list(self._plan.unmatched_include)} "
                "match no variable; see `optimizer.plan`.",
                stacklevel=2,
            )
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(var_list)
        super().build(var_list)

    @property
    def plan(self) -> Plan:
        """The `keras_gc.Plan` this optimizer was built with."""
        if self._plan is None:
            raise ValueError(
                f"{self.name} has no plan yet: it is made when the optimizer is "
                "built, by `model.fit`, by the first `apply`, or by "
                "`optimizer.build(model.trainable_variables)`."
            )
        return self._plan

    @property
    def variables(self) -> list[Any]:
        return self._variables + self.inner_optimizer.variables

    @_skip_autograph
    def apply(
        self, grads: Sequence[Any], trainable_variables: Sequence[Any] | None = None
    ) -> None:
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `trainable_variables`, the "
                    "optimizer must already be built: call "
                    "`optimizer.build(trainable_variables)`."
                )
            variables = self._trainable_variables
            indices = None
        else:
            variables = list(trainable_variables)
            if not self.built:
                with keras.name_scope(self.name, caller=self):
                    self.build(variables)
            indices = [self._index_of(v) for v in variables]
        if self.mode == "gradient":
            grads = self.plan._centralize(
                list(grads), indices, _own_torch_grads(grads, variables)
            )
            self.inner_optimizer.apply(grads, trainable_variables)
            return
        entries = (
            self.plan.entries if indices is None else [self.plan[i] for i in indices]
        )
        # Snapshots of the kernels about to move: the step's only extra memory.
        before = [
            ops.copy(v) if e.centralized and g is not None else None
            for v, g, e in zip(variables, grads, entries, strict=True)
        ]
        self.inner_optimizer.apply(grads, trainable_variables)
        for variable, old, entry in zip(variables, before, entries, strict=True):
            if old is not None:
                variable.assign(_centralized_step(old, variable, entry))

    def apply_gradients(self, grads_and_vars: Any) -> Any:
        grads, trainable_variables = zip(*grads_and_vars, strict=True)
        self.apply(grads, trainable_variables)
        return self.iterations

    def stateless_apply(
        self,
        optimizer_variables: Sequence[Any],
        grads: Sequence[Any],
        trainable_variables: Sequence[Any],
    ) -> tuple[list[Any], list[Any]]:
        if len(trainable_variables) != len(self.plan):
            raise ValueError(
                f"{self.name} was built with {len(self.plan)} trainable variables "
                f"but received {len(trainable_variables)}: the model's trainable "
                "variables changed since (a layer was frozen, unfrozen or added). "
                "Compile the model again with a new optimizer."
            )
        own = len(self._variables)
        if self.mode == "gradient":
            grads = self.plan.centralize(list(grads))
        else:
            # Copies, because torch optimizers update their inputs in place.
            before = [
                ops.copy(value) if entry.centralized else None
                for value, entry in zip(trainable_variables, self.plan, strict=True)
            ]
        new_trainable, new_inner = self.inner_optimizer.stateless_apply(
            list(optimizer_variables[own:]), grads, trainable_variables
        )
        new_trainable = list(new_trainable)
        if self.mode == "update":
            new_trainable = [
                new if old is None else _centralized_step(old, new, entry)
                for old, new, entry in zip(
                    before, new_trainable, self.plan, strict=True
                )
            ]
        # A LossScaleOptimizer passes variables, not values, inside a cond whose
        # branches must return values.
        unchanged = [ops.convert_to_tensor(v) for v in optimizer_variables[:own]]
        return new_trainable, unchanged + list(new_inner)

    def _index_of(self, variable: Any) -> int:
        try:
            return self._get_variable_index(variable)
        except KeyError:
            raise ValueError(
                f"Unknown variable `{variable.path}`: {self.name} was built with "
                "other variables (those of another model, or from before this "
                "variable was created). As with any Keras optimizer, use a new "
                "optimizer for a new set of variables."
            ) from None

    @property
    def learning_rate(self) -> Any:
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate: Any) -> None:
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self) -> Any:
        return self.inner_optimizer.iterations

    @property
    def loss_scale_factor(self) -> Any:
        return self.inner_optimizer.loss_scale_factor

    @loss_scale_factor.setter
    def loss_scale_factor(self, value: Any) -> None:
        # LossScaleOptimizer and MultiOptimizer set it on the optimizers they
        # hold; the base constructor sets it to None before inner exists.
        inner = getattr(self, "inner_optimizer", None)
        if inner is not None:
            inner.loss_scale_factor = value

    @property
    def optimizers(self) -> list[Any]:
        """The optimizers of an inner `MultiOptimizer`, for Keras callbacks."""
        if not hasattr(self.inner_optimizer, "optimizers"):
            raise AttributeError("optimizers")
        return list(self.inner_optimizer.optimizers)

    @property
    def _model_variables_moving_average(self) -> list[Any]:
        # SwapEMAWeights reads it one wrapper deep, so it must pass through
        # LossScaleOptimizer(GradientCentralizationOptimizer(inner)).
        if not hasattr(self.inner_optimizer, "_model_variables_moving_average"):
            raise AttributeError("_model_variables_moving_average")
        return self.inner_optimizer._model_variables_moving_average

    def scale_loss(self, loss: Any) -> Any:
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list: Sequence[Any]) -> None:
        self.inner_optimizer.finalize_variable_values(var_list)

    def exclude_from_weight_decay(
        self, var_list: Sequence[Any] | None = None, var_names: Any = None
    ) -> None:
        self.inner_optimizer.exclude_from_weight_decay(var_list, var_names)

    def get_config(self) -> dict[str, Any]:
        # super().get_config() would describe the unused base hyperparameters.
        options = {
            "mode": self.mode,
            "conv_only": self.conv_only,
            "include": _serializable("include", self.include),
            "exclude": _serializable("exclude", self.exclude),
            "output_axes": _serializable("output_axes", self.output_axes),
        }
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(
                self.inner_optimizer
            ),
            **options,
        }

    @classmethod
    def from_config(
        cls, config: dict[str, Any], custom_objects: Any = None
    ) -> "GradientCentralizationOptimizer":
        config = dict(config)
        if "inner_optimizer" not in config:
            raise ValueError(
                f"{cls.__name__} config has no `inner_optimizer`; received keys "
                f"{sorted(config)}."
            )
        inner = keras.saving.deserialize_keras_object(
            config.pop("inner_optimizer"), custom_objects=custom_objects
        )
        return cls(inner, **config)


def _hint(value: Any) -> str:
    """Says how to get a Keras 3 optimizer from what was given instead."""
    module = getattr(type(value), "__module__", "")
    if isinstance(value, str):
        return f"For a name, pass `keras.optimizers.get({value!r})`."
    if isinstance(value, type) and issubclass(value, keras.optimizers.Optimizer):
        return f"Pass an instance, `{value.__name__}(...)`, not the class."
    if module.startswith(("tf_keras", "tensorflow.python.keras", "keras.optimizers")):
        return "Keras 2 (`tf.keras`) optimizers are not supported; use Keras 3."
    if module.startswith("torch"):
        return (
            "PyTorch optimizers do not run inside Keras; use the Keras optimizer "
            "of the same name, which runs on the torch backend."
        )
    if module.startswith("optax"):
        return (
            "optax transformations do not run inside Keras; use the Keras "
            "optimizer of the same name, which runs on the JAX backend."
        )
    return ""


def _own_torch_grads(grads: Sequence[Any], variables: Sequence[Any]) -> list[bool]:
    """Which gradients are their torch variable's own `.grad`.

    That is what Keras' torch `fit` passes; GC may overwrite those in place,
    as `torch.nn.utils.clip_grad_norm_` does, instead of allocating copies.
    """
    if backend.backend() != "torch":
        return [False] * len(grads)
    # `_value` is the parameter itself; `variable.value` would cost microseconds
    # per variable in scope, device and autocast checks.
    return [
        g is not None
        and not g.requires_grad
        and g is getattr(getattr(v, "_value", None), "grad", None)
        for g, v in zip(grads, variables, strict=True)
    ]


def _centralized_step(old: Any, new: Any, entry: VariablePlan) -> Any:
    """Returns `old + centralize(new - old)`: the inner step, centralized."""
    return old + centralize(new - old, entry.axes or ())


def _serializable(name: str, value: Any) -> Any:
    """Returns a JSON-friendly copy of an option, or explains why none exists."""
    if value is None or isinstance(value, str):
        return value
    if callable(value) or (
        isinstance(value, Sequence) and any(callable(p) for p in value)
    ):
        raise ValueError(
            f"`{name}` holds a Python function, which cannot be saved in the "
            "optimizer's config. Use regex strings on `variable.path` instead."
        )
    if isinstance(value, dict):
        return {
            pattern: axes if isinstance(axes, int) else list(axes)
            for pattern, axes in value.items()
        }
    return list(value)


def wrap(
    optimizer: keras.optimizers.Optimizer,
    *,
    conv_only: bool = False,
    include: Pattern | Sequence[Pattern] | None = None,
    exclude: Pattern | Sequence[Pattern] | None = None,
    output_axes: OutputAxes = None,
    mode: str = "gradient",
) -> keras.optimizers.Optimizer:
    """Adds Gradient Centralization to a Keras optimizer.

    Args:
        optimizer: A `keras.optimizers.Optimizer` instance. A
            `LossScaleOptimizer` that is not built yet gets GC inside it.
        conv_only: If `True`, only convolution kernels are centralized.
        include: If given, only variables matching these patterns (path regex
            or predicate) are centralized.
        exclude: Variables matching these patterns are left alone.
        output_axes: Overrides of the output axes, see `keras_gc.plan`.
        mode: `"gradient"` to centralize gradients (the paper's GC) or
            `"update"` to centralize the inner optimizer's weight change.

    Returns:
        A `GradientCentralizationOptimizer` around `optimizer`; for a
        `LossScaleOptimizer`, a new `LossScaleOptimizer` with the same settings
        around a `GradientCentralizationOptimizer` of its inner optimizer.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model.compile(optimizer=keras_gc.wrap(keras.optimizers.RMSprop(1e-4)),
    ...               loss="mse")
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        if optimizer.built:
            raise ValueError(
                f"`{optimizer.name}` is already built, and its loss scale would be "
                "lost: wrap the LossScaleOptimizer before training with it."
            )
        return keras.optimizers.LossScaleOptimizer(
            wrap(
                optimizer.inner_optimizer,
                conv_only=conv_only,
                include=include,
                exclude=exclude,
                output_axes=output_axes,
                mode=mode,
            ),
            initial_scale=optimizer.initial_scale,
            dynamic_growth_steps=optimizer.dynamic_growth_steps,
            name=optimizer.name,
        )
    return GradientCentralizationOptimizer(
        optimizer,
        conv_only=conv_only,
        include=include,
        exclude=exclude,
        output_axes=output_axes,
        mode=mode,
    )
