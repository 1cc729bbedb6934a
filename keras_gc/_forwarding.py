"""The wrapper's view of its inner optimizer's settings.

A wrapper is itself a Keras `Optimizer`, whose constructor gives it its own
`weight_decay`, `clipnorm`, `use_ema`, ... that nothing uses. Users,
callbacks and recipes read those settings from whatever `model.optimizer`
is, so the wrapper answers with the inner optimizer's: every public
attribute it does not define itself is read from, and written to, the
inner optimizer, as `learning_rate` is.
"""

from typing import Any

# What the base `Optimizer.__init__` sets on every optimizer, with its defaults.
_BASE_SETTINGS: dict[str, Any] = {
    "weight_decay": None,
    "clipnorm": None,
    "clipvalue": None,
    "global_clipnorm": None,
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "gradient_accumulation_steps": None,
}


class ForwardsToInner:
    """Forwards the public attributes a wrapper lacks to `inner_optimizer`.

    While `_reads_own_settings` is true, the base settings read as the
    wrapper's own defaults: the base `build` would otherwise make EMA and
    accumulator variables for the wrapper, which the inner optimizer makes
    for itself.
    """

    _reads_own_settings = False

    def __getattr__(self, name: str) -> Any:
        # Called only when normal lookup fails.
        inner = self.__dict__.get("inner_optimizer")
        if inner is None or name.startswith("_"):
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{name}'"
            )
        return getattr(inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        inner = self.__dict__.get("inner_optimizer")
        if (
            inner is not None
            and not name.startswith("_")
            and name not in self.__dict__
            and not hasattr(type(self), name)
            and hasattr(inner, name)
        ):
            setattr(inner, name, value)
            return
        super().__setattr__(name, value)


def _base_setting(name: str) -> property:
    def get(self: ForwardsToInner) -> Any:
        inner = self.__dict__.get("inner_optimizer")
        if inner is None or self._reads_own_settings:
            return _BASE_SETTINGS[name]
        return getattr(inner, name)

    def set(self: ForwardsToInner, value: Any) -> None:
        # The base constructor sets its defaults before `inner_optimizer` exists.
        if "inner_optimizer" in self.__dict__:
            setattr(self.__dict__["inner_optimizer"], name, value)

    return property(get, set, doc=f"The inner optimizer's `{name}`.")


for _name in _BASE_SETTINGS:
    setattr(ForwardsToInner, _name, _base_setting(_name))
