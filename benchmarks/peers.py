"""Peers, on the same models, each against its own bare optimizer in its own loop.

On JAX, `optax.chain(optax.centralize(), base)` in a jitted optax loop over
`model.stateless_call` (and `keras_gc.Plan.centralize` in the same loop); on
PyTorch, pytorch-optimizer's `centralize_gradient` in a plain torch loop (and
`keras_gc.Plan.centralize(..., in_place=True)`, in place like it, in the same
loop). A peer that is not installed is skipped, and the reason given.
"""

import argparse
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

import keras_gc
from benchmarks.timing import interleave, ratios
from benchmarks.workloads import (
    BACKEND,
    LEARNING_RATE,
    build_workload,
    make_loss,
    steps_for,
)


def _peer_model(
    workload: str, args: argparse.Namespace
) -> tuple[keras.Model, np.ndarray, np.ndarray, Any]:
    build, x, y, loss = build_workload(workload, args)
    keras.utils.set_random_seed(0)
    model = build()
    return model, x, y, keras.losses.get(make_loss(loss))


def peer_optax(
    workload: str, optimizer: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Jitted optax loops on `model.stateless_call`: bare, optax GC, keras_gc."""
    import jax
    import optax

    model, x, y, loss_fn = _peer_model(workload, args)
    base = {
        "rmsprop": lambda: optax.rmsprop(LEARNING_RATE),
        "adam": lambda: optax.adam(LEARNING_RATE),
        "sgdm": lambda: optax.sgd(LEARNING_RATE, momentum=0.9),
    }[optimizer]
    plan = keras_gc.plan(model)

    def keras_gc_transform() -> optax.GradientTransformation:
        def init(params: Any) -> Any:
            return optax.EmptyState()

        def update(updates: Any, state: Any, params: Any = None) -> Any:
            return plan.centralize(updates), state

        return optax.GradientTransformation(init, update)

    transforms = {
        "bare": base(),
        "optax.centralize": optax.chain(optax.centralize(), base()),
        "keras_gc": optax.chain(keras_gc_transform(), base()),
    }
    non_trainable = [v.value for v in model.non_trainable_variables]
    xj, yj = jax.numpy.asarray(x), jax.numpy.asarray(y)
    steps = steps_for(workload, args)

    def loss_of(params: Any, state: Any) -> Any:
        pred, state = model.stateless_call(params, state, xj, training=True)
        return keras.ops.mean(loss_fn(yj, pred)), state

    arms = {}
    for name, transform in transforms.items():

        @jax.jit
        def step(params: Any, opt_state: Any, state: Any, t: Any = transform) -> Any:
            (loss, state), grads = jax.value_and_grad(loss_of, has_aux=True)(
                params, state
            )
            updates, opt_state = t.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, state, loss

        params = [jax.numpy.array(v.value) for v in model.trainable_variables]
        holder = {"p": params, "o": transform.init(params), "s": non_trainable}

        def run(step: Any = step, holder: dict[str, Any] = holder) -> None:
            for _ in range(steps):
                holder["p"], holder["o"], holder["s"], loss = step(
                    holder["p"], holder["o"], holder["s"]
                )
            jax.block_until_ready(loss)

        arms[name] = run
    result = ratios(interleave(arms, args.rounds, steps, 2, args.seconds))
    result["note"] = (
        "optax.centralize averages over axes 1..n (keeps axis 0), the wrong "
        "axis for Keras (in, out) kernels; the cost is that of a mean and a "
        "subtraction all the same."
    )
    return result


def peer_torch(
    workload: str, optimizer: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Plain torch loops: bare, pytorch-optimizer's GC, keras_gc's plan."""
    import torch
    from pytorch_optimizer import centralize_gradient

    model, x, y, loss_fn = _peer_model(workload, args)
    variables = model.trainable_variables
    params = [v.value for v in variables]
    plan = keras_gc.plan(model)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    steps = steps_for(workload, args)
    factory = {
        "rmsprop": lambda p: torch.optim.RMSprop(p, LEARNING_RATE),
        "adam": lambda p: torch.optim.Adam(p, LEARNING_RATE),
        "sgdm": lambda p: torch.optim.SGD(p, LEARNING_RATE, momentum=0.9),
    }[optimizer]
    initial = [p.detach().clone() for p in params]

    def pytorch_optimizer_gc() -> None:
        centralize_gradient([p.grad for p in params], gc_conv_only=False)

    def keras_gc_gc() -> None:
        plan.centralize([p.grad for p in params], in_place=True)

    hooks: dict[str, Callable[[], None] | None] = {
        "bare": None,
        "pytorch_optimizer": pytorch_optimizer_gc,
        "keras_gc": keras_gc_gc,
    }
    arms = {}
    for name, hook in hooks.items():
        # One optimizer per arm, all over the same parameters: each arm
        # restarts from the initial weights, so the arms do the same work.
        opt = factory(params)

        def run(opt: Any = opt, hook: Any = hook) -> None:
            with torch.no_grad():
                for p, p0 in zip(params, initial, strict=True):
                    p.copy_(p0)
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = torch.mean(loss_fn(yt, model(xt, training=True)))
                loss.backward()
                if hook is not None:
                    hook()
                opt.step()

        arms[name] = run
    result = ratios(interleave(arms, args.rounds, steps, 2, args.seconds))
    result["note"] = (
        "pytorch_optimizer.centralize_gradient averages over dims 1..n (keeps "
        "dim 0), the wrong axis for Keras (in, out) kernels; the cost is that "
        "of a mean and a subtraction all the same. Each round restores the "
        "initial weights (a copy, in every arm)."
    )
    return result


def peer_passes(
    grads: list[Any],
) -> dict[str, tuple[str, Callable[[], Any]]] | str:
    """The peers' GC pass alone on `grads`, or why there is none.

    Returns:
        `{peer: (the way of running keras_gc's pass it compares with, pass)}`:
        optax's `centralize` jitted, against `jax.jit(plan.centralize)`;
        pytorch-optimizer's `centralize_gradient`, in place, against
        `plan.centralize(grads, in_place=True)`.
    """
    try:
        if BACKEND == "jax":
            import jax
            import optax

            transform = optax.centralize()
            jitted = jax.jit(lambda gs: transform.update(gs, transform.init(gs))[0])
            return {
                "optax.centralize": (
                    "jit",
                    lambda: jax.block_until_ready(jitted(grads)),
                )
            }
        if BACKEND == "torch":
            from pytorch_optimizer import centralize_gradient

            return {
                "pytorch_optimizer.centralize_gradient": (
                    "in place",
                    lambda: centralize_gradient(grads, gc_conv_only=False),
                )
            }
    except ImportError as error:
        return f"skipped: {error}"
    return "no peer on this backend"


def measure_peers(
    workload: str, optimizer: str, args: argparse.Namespace
) -> dict[str, Any] | str:
    """The peer comparison for this backend, or why there is none."""
    try:
        if BACKEND == "jax":
            return peer_optax(workload, optimizer, args)
        if BACKEND == "torch":
            return peer_torch(workload, optimizer, args)
    except ImportError as error:
        return f"skipped: {error}"
    return "no peer on this backend"
