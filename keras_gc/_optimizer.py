"""The optimizer wrapper that centralizes gradients before any Keras optimizer."""

from collections.abc import Sequence
from typing import Any, Unpack

import keras
from keras import ops

from keras_gc import _compat
from keras_gc._forwarding import ForwardsToInner
from keras_gc._options import (
    Options,
    OptionsKwargs,
    load_functions,
    options_from,
)
from keras_gc._plan import Plan, make_plan, warn_about
from keras_gc._step import around_inner_step
from keras_gc.backend import do_not_convert


@keras.saving.register_keras_serializable(package="keras_gc")
class GradientCentralizationOptimizer(ForwardsToInner, keras.optimizers.Optimizer):
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

    Every public attribute the wrapper does not define itself (`weight_decay`,
    `clipnorm`, `use_ema`, `beta_1`, ...) is read from, and written to, the
    inner optimizer, as `learning_rate` is.

    Args:
        inner_optimizer: The `keras.optimizers.Optimizer` instance to wrap.
        name: String, the name of the optimizer.
        options: A `keras_gc.Options`, given instead of the options as
            keyword arguments (as `keras_gc.wrap` does, which has checked
            them already).
        **kwargs: The options of `keras_gc.Options`: `conv_only`,
            `include`, `exclude`, `output_axes`, `mode`, and those of adaptive
            gradient clipping: `gc`, `agc`, `agc_eps` and `agc_head`.

    Attributes:
        inner_optimizer: The wrapped optimizer, which computes every step
            (Keras callbacks look for it under this name).
        options: The `keras_gc.Options` given, checked and frozen; they are
            saved with the optimizer's config.

    Examples:
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
        name: str | None = None,
        *,
        options: Options | None = None,
        **kwargs: Unpack[OptionsKwargs],
    ) -> None:
        checked = _checked(options, kwargs, type(self).__name__)
        checked.check_savable()
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
        _refuse_nested_wrapper(inner_optimizer)
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self._options = checked
        self._plan: Plan | None = None

    @property
    def options(self) -> Options:
        """The `keras_gc.Options` this optimizer plans with; fixed once built."""
        return self._options

    @options.setter
    def options(self, options: Options) -> None:
        if self.built:
            raise ValueError(
                f"{self.name} is built: its plan was made with its options, and "
                "its config saves those. Make a new optimizer with the new "
                "options instead, e.g. `keras_gc.wrap(keras.optimizers.Adam(...), "
                "exclude=...)`."
            )
        if not isinstance(options, Options):
            raise TypeError(
                f"`options` must be a `keras_gc.Options`; received {options!r}."
            )
        options.check_savable()
        self._options = options

    @do_not_convert
    def build(self, var_list: Sequence[Any]) -> None:
        self._plan = make_plan(var_list, self.options)
        warn_about(self._plan, self.name)
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(var_list)
        # A MultiOptimizer given a function finds its optimizers only now.
        _refuse_nested_wrapper(self.inner_optimizer)
        # The inner optimizer makes its own EMA and accumulator variables.
        self._reads_own_settings = True
        try:
            super().build(var_list)
        finally:
            self._reads_own_settings = False

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
        return _compat.optimizer_variables(self) + self.inner_optimizer.variables

    @do_not_convert
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
            variables = _compat.built_variables(self)
            indices = None
        else:
            variables = list(trainable_variables)
            if not self.built:
                with keras.name_scope(self.name, caller=self):
                    self.build(variables)
            indices = [self._index_of(v) for v in variables]
        grads = list(grads)
        if len(grads) != len(variables):
            raise ValueError(
                f"{self.name} received {len(grads)} gradients for "
                f"{len(variables)} variables: give one gradient (or None) per "
                "variable, in the same order."
            )

        def inner_step(grads: list[Any]) -> list[Any]:
            self.inner_optimizer.apply(grads, trainable_variables)
            return variables

        new = around_inner_step(
            self.plan, self.options.mode, grads, variables, indices, inner_step
        )
        for variable, value in zip(variables, new, strict=True):
            if value is not variable:
                variable.assign(value)

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
        own = len(_compat.optimizer_variables(self))
        new_inner: list[Any] = []

        def inner_step(grads: list[Any]) -> list[Any]:
            new_trainable, inner_values = self.inner_optimizer.stateless_apply(
                list(optimizer_variables[own:]), grads, trainable_variables
            )
            new_inner.extend(inner_values)
            return list(new_trainable)

        new_trainable = around_inner_step(
            self.plan, self.options.mode, grads, trainable_variables, None, inner_step
        )
        # A LossScaleOptimizer passes variables, not values, inside a cond whose
        # branches must return values.
        unchanged = [ops.convert_to_tensor(v) for v in optimizer_variables[:own]]
        return new_trainable, unchanged + list(new_inner)

    def _index_of(self, variable: Any) -> int:
        try:
            return _compat.variable_index(self, variable)
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
        return _compat.moving_averages(self.inner_optimizer)

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
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(
                self.inner_optimizer
            ),
            **self.options.get_config(),
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
        return cls(inner, **load_functions(config, custom_objects))


def _checked(options: Options | None, kwargs: Any, caller: str) -> Options:
    """The options given as an `Options` or as keyword arguments, checked once."""
    if options is None:
        return options_from(kwargs, caller)
    if not isinstance(options, Options):
        raise TypeError(
            f"`options` must be a `keras_gc.Options`; received {options!r} of type "
            f"{type(options).__name__}."
        )
    if kwargs:
        raise ValueError(
            f"{caller} got `options` and also `{'`, `'.join(kwargs)}`: give the "
            "options either as a `keras_gc.Options` or as keyword arguments."
        )
    return options


def _refuse_nested_wrapper(optimizer: keras.optimizers.Optimizer) -> None:
    """Raises if `optimizer`, or an optimizer it dispatches to, centralizes."""
    held = [optimizer, *getattr(optimizer, "optimizers", ())]
    wrapped = [o for o in held if isinstance(o, GradientCentralizationOptimizer)]
    if not wrapped:
        return
    where = "" if wrapped[0] is optimizer else f" (it holds `{wrapped[0].name}`)"
    raise ValueError(
        f"`{optimizer.name}` already centralizes gradients{where}; wrapping it "
        "again would centralize twice. Wrap only the optimizers that should "
        "centralize, or pass the wrapper's `inner_optimizer` instead."
    )


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


def wrap(
    optimizer: keras.optimizers.Optimizer, **options: Unpack[OptionsKwargs]
) -> keras.optimizers.Optimizer:
    """Adds Gradient Centralization to a Keras optimizer.

    Args:
        optimizer: A `keras.optimizers.Optimizer` instance. A
            `LossScaleOptimizer` that is not built yet gets GC inside it.
        **options: The options of `keras_gc.Options`: `conv_only`,
            `include`, `exclude`, `output_axes`, `mode`, and those of adaptive
            gradient clipping: `gc`, `agc`, `agc_eps` and `agc_head`.

    Returns:
        A `GradientCentralizationOptimizer` around `optimizer`; for a
        `LossScaleOptimizer`, a new `LossScaleOptimizer` with the same settings
        around a `GradientCentralizationOptimizer` of its inner optimizer.

    Examples:
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model.compile(optimizer=keras_gc.wrap(keras.optimizers.RMSprop(1e-4)),
        ...               loss="mse")
    """
    return _wrap(optimizer, options_from(options, "wrap"))


def _wrap(optimizer: keras.optimizers.Optimizer, options: Options) -> Any:
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        if optimizer.built:
            raise ValueError(
                f"`{optimizer.name}` is already built, and its loss scale would be "
                "lost: wrap the LossScaleOptimizer before training with it."
            )
        return keras.optimizers.LossScaleOptimizer(
            _wrap(optimizer.inner_optimizer, options),
            initial_scale=optimizer.initial_scale,
            dynamic_growth_steps=optimizer.dynamic_growth_steps,
            name=optimizer.name,
        )
    return GradientCentralizationOptimizer(optimizer, options=options)
