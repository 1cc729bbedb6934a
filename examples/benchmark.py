"""What does Gradient Centralization cost per training step, on this backend?

Times a training step of `keras_gc.wrap(optimizer)` against the bare
`optimizer`, on two copies of a model built from the same weights, in one
process, with the backend from `KERAS_BACKEND`. Rounds alternate between the
arms (bare GC, GC bare, ...), warm-up steps are excluded, and each round
gives one wrapped/bare ratio: the table shows the median ratio, its 95%
confidence interval and the interquartile range, because a shared CPU is noisy
and only paired, interleaved rounds survive that. Each workload has a target
ratio (`TARGETS`), and the table says whether the interval shows it met.
Rounds go on until each measurement has taken `--seconds`, so short steps get
many. A round is one `fit` over enough steps that `fit`'s own fixed cost
(measured first: tens of ms on TensorFlow) is at most 2% of it, since it
would pull the ratio toward 1. With `--control`, a second bare twin runs in
the same rounds (an A/A test), to show how far apart two identical arms come
out on this machine.

Workloads:

- `hoh`: the horse-or-human CNN at 300x300 (a 40M-parameter Dense; compute
  heavy, long steps).
- `dense60`: 60 `Dense(64)` layers, batch 32 (many small kernels, short
  steps: the per-variable overhead shows here).
- `resnet50`: `keras.applications.ResNet50(weights=None)` at a small input
  size (53 convolution kernels of many shapes).

It also measures, unless told not to:

- Peak memory of each arm: the peak resident set size (Linux `VmHWM`) of a
  fresh subprocess that builds the workload and trains it, over the whole run
  and over steady-state steps only (the peak is reset after the first, compiling
  steps), and its growth from just before training. CPU backends keep no
  allocator statistics, so RSS is the best available measure: it counts every
  page the process touched (libraries, compiler, allocator caches), so it is
  coarse (a few MiB) and a little noisy. (`getrusage`'s ru_maxrss is no use
  here: a child inherits its parent's.) The optimizer variables are also
  counted exactly: GC must add none.
- The GC pass alone: `plan.centralize(gradients)` on gradients of the
  workload's shapes, as bytes of centralized gradient per second, next to the
  machine's copy bandwidth (a NumPy copy of the same number of bytes) and the
  backend's cheapest per-tensor op (`g * 2`) on the same tensors, measured in
  the same run. On torch also "in place", what the wrapper runs in `fit` on
  the variables' own `.grad`, next to `g.mul_(1)`. GC reads each kernel
  twice (mean, then subtraction) and writes it once, so about 2/3 of the copy
  bandwidth is its floor-cost throughput.
- Peers, on the same models, each against its own bare optimizer: on JAX,
  `optax.chain(optax.centralize(), base)` in a jitted optax loop over
  `model.stateless_call` (and `keras_gc.Plan.centralize` in the same loop);
  on PyTorch, pytorch-optimizer's `centralize_gradient` in a plain torch loop
  (and `keras_gc.Plan.centralize(..., in_place=True)`, in place like it, in
  the same loop). A peer that is not
  installed is skipped, and the reason printed.

It prints a table and, with `--output DIR`, writes `benchmark-<backend>.json`
(every number, every round) and `benchmark-<backend>.md` (the table).

    KERAS_BACKEND=jax python examples/benchmark.py --quick --output bench
    KERAS_BACKEND=torch python examples/benchmark.py --workloads dense60 \\
        --optimizers adam --modes eager --rounds 21
    python examples/benchmark.py --help

On a shared or small machine, `--threads 1` (torch and TensorFlow) gives much
steadier numbers: two intra-op threads fighting other processes for two cores
can make a step ten times slower, at random.
"""

import argparse
import contextlib
import datetime
import itertools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import scipy.stats

import keras_gc

BACKEND = keras.backend.backend()
WORKLOADS = ("hoh", "dense60", "resnet50")
OPTIMIZERS = ("rmsprop", "adam", "sgdm")
# Execution modes: how the training step runs.
MODES = {
    "jax": ("jit", "eager"),
    "tensorflow": ("graph", "jit", "eager"),
    "torch": ("eager", "jit"),
}[BACKEND]
MODE_HELP = {
    "jit": "jit_compile=True (XLA on JAX and TensorFlow, torch.compile on torch)",
    "graph": "tf.function without XLA (TensorFlow's default on CPU)",
    "eager": "run_eagerly=True (torch: jit_compile=False)",
}
LEARNING_RATE = 1e-4
FIT_OVERHEAD_SHARE = 0.02
# The GC/bare per-step ratio keras-gc aims to stay under (its issue #6).
TARGETS = {"hoh": 1.02, "dense60": 1.05, "resnet50": 1.05}
MAX_ROUND_BYTES = 2**29


# ----------------------------------------------------------------------------
# Workloads and optimizers


def build_workload(
    name: str, args: argparse.Namespace
) -> tuple[Callable[[], keras.Model], np.ndarray, np.ndarray, str]:
    """Returns a model builder, one batch (x, y) and the loss of a workload."""
    rng = np.random.default_rng(0)
    if name == "hoh":
        # Run as a script, this file's folder is on `sys.path`.
        import horse_or_human

        size = args.hoh_size
        x = rng.random((args.hoh_batch, size, size, 3), dtype="float32")
        y = rng.integers(0, 2, (args.hoh_batch, 1)).astype("float32")

        def build() -> keras.Model:
            return horse_or_human.build_model(size, augment=False)

        return build, x, y, "binary_crossentropy"
    if name == "dense60":
        x = rng.standard_normal((32, 64), dtype="float32")
        y = rng.integers(0, 10, (32,))

        def build() -> keras.Model:
            layers = [
                keras.layers.Dense(
                    64, activation="relu", kernel_initializer="he_normal"
                )
                for _ in range(60)
            ]
            return keras.Sequential(
                [keras.Input((64,)), *layers, keras.layers.Dense(10)]
            )

        return build, x, y, "sparse_categorical_crossentropy_logits"
    if name == "resnet50":
        size = args.resnet_size
        x = rng.random((args.resnet_batch, size, size, 3), dtype="float32")
        y = rng.integers(0, 10, (args.resnet_batch,))

        def build() -> keras.Model:
            return keras.applications.ResNet50(
                weights=None, input_shape=(size, size, 3), classes=10
            )

        return build, x, y, "sparse_categorical_crossentropy"
    raise ValueError(f"unknown workload {name!r}")


def make_loss(name: str) -> Any:
    if name == "sparse_categorical_crossentropy_logits":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return name


def make_optimizer(name: str) -> keras.optimizers.Optimizer:
    if name == "rmsprop":
        return keras.optimizers.RMSprop(LEARNING_RATE)
    if name == "adam":
        return keras.optimizers.Adam(LEARNING_RATE)
    if name == "sgdm":
        return keras.optimizers.SGD(LEARNING_RATE, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}")


def twin_models(build: Callable[[], keras.Model], count: int) -> list[keras.Model]:
    """`count` models with identical weights."""
    keras.utils.set_random_seed(0)
    models = [build() for _ in range(count)]
    for model in models[1:]:
        model.set_weights(models[0].get_weights())
    return models


def compile_arm(
    model: keras.Model, optimizer_name: str, mode: str, gc: bool, loss: str
) -> None:
    optimizer = make_optimizer(optimizer_name)
    if gc:
        optimizer = keras_gc.wrap(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=make_loss(loss),
        jit_compile=mode == "jit",
        run_eagerly=mode == "eager" and BACKEND != "torch",
    )


def step_runner(
    model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int, how: str
) -> Callable[[], None]:
    """A function that runs `steps` training steps and waits for them."""
    if how == "train_on_batch":

        def run() -> None:
            for _ in range(steps):
                model.train_on_batch(x, y)

        return run
    xs = np.concatenate([x] * steps)
    ys = np.concatenate([y] * steps)
    batch = len(x)

    def run_fit() -> None:
        model.fit(xs, ys, batch_size=batch, epochs=1, shuffle=False, verbose=0)

    return run_fit


# ----------------------------------------------------------------------------
# Statistics


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, its 95% confidence interval, quartiles, min and max of some values.

    The interval (`ci95`) is the distribution-free one, from order statistics
    (`scipy.stats.quantile_test`): round times on a shared machine are skewed
    and heavy-tailed, so no normal approximation holds. It needs at least 6
    values, and is `None` below that.
    """
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    median = statistics.median(ordered)
    interval = scipy.stats.quantile_test(ordered, q=median).confidence_interval(0.95)
    return {
        "median": median,
        "ci95": None if math.isnan(interval.low) else [interval.low, interval.high],
        "q1": q1,
        "q3": q3,
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
    }


def verdict(ratio: dict[str, Any], target: float) -> str:
    """Whether a median ratio is within `target`, at 95% confidence.

    Returns `"met"` when the whole confidence interval of the median is at or
    under the target, `"missed"` when it is all over it, and otherwise
    `"undecided"` (more rounds would tell) or `"too few rounds"`.
    """
    if ratio["ci95"] is None:
        return "too few rounds"
    low, high = ratio["ci95"]
    if high <= target:
        return "met"
    return "missed" if low > target else "undecided"


def interleave(
    arms: dict[str, Callable[[], None]],
    rounds: int,
    steps: int,
    warmup: int = 1,
    seconds: float = 0.0,
) -> dict[str, list[float]]:
    """Seconds per step of each arm, one value per round.

    Each round runs every arm once, in the next of all their orders (A B,
    B A, A B, ...; with three arms, six orders), so that each arm runs in
    each place equally often and a slow drift of the machine falls on all
    arms alike. `warmup` untimed calls of each arm go first.
    There are at least `rounds` rounds, and more until the timed calls add up
    to `seconds`: short steps get many rounds, so that their median is as
    steady as that of long steps.
    """
    names = list(arms)
    orders = list(itertools.permutations(names))
    for _ in range(warmup):
        for name in names:
            arms[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    spent = 0.0
    r = 0
    while r < rounds or spent < seconds:
        for name in orders[r % len(orders)]:
            elapsed = _seconds(arms[name])
            times[name].append(elapsed / steps)
            spent += elapsed
        r += 1
    return times


def ratios(times: dict[str, list[float]], base: str = "bare") -> dict[str, Any]:
    """Per-round ratios of each arm to `base`, summarized."""
    result: dict[str, Any] = {"seconds": {k: summary(v) for k, v in times.items()}}
    for name, values in times.items():
        if name == base:
            continue
        per_round = [a / b for a, b in zip(values, times[base], strict=True)]
        result[name] = {"ratio": summary(per_round), "per_round": per_round}
    return result


# ----------------------------------------------------------------------------
# Per-step time of wrap(opt) against opt


def measure_step(
    workload: str, optimizer: str, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    build, x, y, loss = build_workload(workload, args)
    # A second bare twin (A/A) shows the bias of the measurement itself.
    names = ("bare", "gc", "control") if args.control else ("bare", "gc")
    models = twin_models(build, len(names))
    for name, model in zip(names, models, strict=True):
        compile_arm(model, optimizer, mode, name == "gc", loss)
    bare, wrapped = models[:2]
    steps = steps_for(workload, args, mode)
    calibration = None
    if args.step == "fit" and not args.steps:
        calibration = fit_steps(bare, x, y, steps)
        steps = calibration["steps"]
    arms = {
        name: step_runner(model, x, y, steps, args.step)
        for name, model in zip(names, models, strict=True)
    }
    # The first call compiles; a second settles caches and allocators.
    times = interleave(arms, args.rounds, steps, 2, args.seconds)
    result = ratios(times)
    result["steps_per_round"] = steps
    result["fit_calibration"] = calibration
    result["optimizer_variables"] = {
        "bare": _count_variables(bare.optimizer.variables),
        "gc": _count_variables(wrapped.optimizer.variables),
    }
    return result


def fit_steps(
    model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int
) -> dict[str, Any]:
    """Steps per `fit` round that make `fit`'s fixed cost a small share of it.

    A `fit` call pays for its set-up and tear-down once, on top of its steps
    (on this project's 2-core VM about 4 ms on JAX and 60 ms on TensorFlow,
    against 1.3 and 5 ms per `dense60` step): in every round of both arms
    alike, it pulls the GC/bare ratio toward 1. This times `fit` over one step
    and over `steps` steps (fastest of two each), solves for the fixed cost
    and the cost per step, and returns enough steps for the fixed cost to be
    at most `FIT_OVERHEAD_SHARE` of a round, and at least `steps` (but no more
    than `MAX_ROUND_BYTES` of batches).
    """
    steps = max(steps, 2)

    def fastest(run: Callable[[], None]) -> float:
        run()
        return min(_seconds(run) for _ in range(2))

    one = fastest(step_runner(model, x, y, 1, "fit"))
    many = fastest(step_runner(model, x, y, steps, "fit"))
    per_step = max((many - one) / (steps - 1), 1e-9)
    overhead = max(one - per_step, 0.0)
    needed = math.ceil(overhead / (FIT_OVERHEAD_SHARE * per_step))
    cap = max(steps, MAX_ROUND_BYTES // (x.nbytes + y.nbytes))
    return {
        "steps": min(max(steps, needed), cap),
        "fit_overhead_s": overhead,
        "step_s": per_step,
    }


def _seconds(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def steps_for(workload: str, args: argparse.Namespace, mode: str = "") -> int:
    if args.steps:
        return args.steps
    base = {"hoh": 3, "dense60": 40, "resnet50": 3}[workload]
    if mode == "eager" and BACKEND != "torch":
        base = max(1, base // 4)  # eager JAX and TensorFlow steps are long
    return base if args.quick else base * 3


def _count_variables(variables: Sequence[Any]) -> dict[str, int]:
    size = sum(
        math.prod(v.shape) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
        for v in variables
    )
    return {"count": len(variables), "bytes": int(size)}


# ----------------------------------------------------------------------------
# Peak memory, one fresh subprocess per arm


def _rss_mib() -> float:
    with open("/proc/self/statm") as file:
        pages = int(file.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _max_rss_mib() -> float:
    """Peak RSS of this process: VmHWM, which (unlike `getrusage`'s
    ru_maxrss) is not inherited from the parent through fork and exec."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False if it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory_child(spec: dict[str, Any], args: argparse.Namespace) -> None:
    """Runs one arm in this (fresh) process and prints its memory as JSON."""
    build, x, y, loss = build_workload(spec["workload"], args)
    keras.utils.set_random_seed(0)
    model = build()
    compile_arm(model, spec["optimizer"], spec["mode"], spec["gc"], loss)
    steps = steps_for(spec["workload"], args, spec["mode"])
    run = step_runner(model, x, y, steps, args.step)
    before = _rss_mib()
    peak_before = _max_rss_mib()
    run()  # builds the optimizer and compiles the step
    run()
    peak_first = _max_rss_mib()
    reset = _reset_peak_rss()
    run()
    run()
    print(
        "MEMORY "
        + json.dumps(
            {
                "rss_before_mib": before,
                "max_rss_before_mib": peak_before,
                "max_rss_mib": max(peak_first, _max_rss_mib()),
                "max_rss_steady_mib": _max_rss_mib() if reset else None,
                "rss_after_mib": _rss_mib(),
            }
        ),
        flush=True,
    )


def measure_memory(
    workload: str, optimizer: str, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "gc": []}
    for r in range(args.memory_repeats):
        for arm in ("bare", "gc") if r % 2 == 0 else ("gc", "bare"):
            spec = {
                "workload": workload,
                "optimizer": optimizer,
                "mode": mode,
                "gc": arm == "gc",
            }
            command = [
                sys.executable,
                os.path.abspath(__file__),
                *_child_flags(args),
                "--memory-child",
                json.dumps(spec),
            ]
            done = subprocess.run(
                command, capture_output=True, text=True, check=False, env=os.environ
            )
            lines = [
                line for line in done.stdout.splitlines() if line.startswith("MEMORY ")
            ]
            if done.returncode or not lines:
                raise RuntimeError(
                    f"memory subprocess failed ({done.returncode}):\n"
                    f"{done.stderr[-3000:]}"
                )
            runs[arm].append(json.loads(lines[-1][len("MEMORY ") :]))
    peak = {arm: min(run["max_rss_mib"] for run in runs[arm]) for arm in runs}
    growth = {
        arm: min(run["max_rss_mib"] - run["rss_before_mib"] for run in runs[arm])
        for arm in runs
    }
    steady = {
        arm: min(run["max_rss_steady_mib"] or math.nan for run in runs[arm])
        for arm in runs
    }
    return {
        "runs": runs,
        "peak_mib": peak,
        "growth_mib": growth,
        "steady_peak_mib": steady,
        "steady_ratio": steady["gc"] / steady["bare"],
        "peak_ratio": peak["gc"] / peak["bare"],
        "growth_ratio": growth["gc"] / growth["bare"] if growth["bare"] else None,
    }


def _child_flags(args: argparse.Namespace) -> list[str]:
    flags = [
        f"--hoh-size={args.hoh_size}",
        f"--hoh-batch={args.hoh_batch}",
        f"--resnet-size={args.resnet_size}",
        f"--resnet-batch={args.resnet_batch}",
        f"--step={args.step}",
    ]
    if args.steps:
        flags.append(f"--steps={args.steps}")
    if args.quick:
        flags.append("--quick")
    if args.threads:
        flags.append(f"--threads={args.threads}")
    for path in args.preload:
        flags.append(f"--preload={path}")
    return flags


# ----------------------------------------------------------------------------
# The GC pass alone: bandwidth


def _sync(values: Any) -> Any:
    if BACKEND == "jax":
        import jax

        jax.block_until_ready(values)
    return values


def _best_seconds(function: Callable[[], Any], repeats: int, number: int) -> float:
    """Median over `repeats` of the mean time of `number` calls."""
    function()
    function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            function()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def gc_pass_functions(
    plan: keras_gc.Plan, grads: list[Any]
) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """{how: (centralize, per-tensor g * 2)} for each way the pass can run."""

    def centralize() -> Any:
        return _sync(plan.centralize(grads))

    def double() -> Any:
        return _sync([g * 2 for g in grads])

    functions = {"eager": (centralize, double)}
    if BACKEND == "torch":
        # What the wrapper runs in torch `fit`, on the variables' own `.grad`
        # (centralizing twice changes nothing, so repeats cost the same).
        functions["in place"] = (
            lambda: plan.centralize(grads, in_place=True),
            lambda: [g.mul_(1.0) for g in grads],
        )
    if BACKEND == "jax":
        import jax

        jit_centralize = jax.jit(plan.centralize)
        jit_double = jax.jit(lambda gs: [g * 2 for g in gs])
        functions["jit"] = (
            lambda: _sync(jit_centralize(grads)),
            lambda: _sync(jit_double(grads)),
        )
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        for how, jit in (("graph", False), ("jit", True)):
            g_centralize = tf.function(plan.centralize, jit_compile=jit)
            g_double = tf.function(lambda gs: [g * 2 for g in gs], jit_compile=jit)
            functions[how] = (
                lambda f=g_centralize: f(grads),
                lambda f=g_double: f(grads),
            )
    return functions


def measure_gc_pass(workload: str, args: argparse.Namespace) -> dict[str, Any]:
    build, _, _, _ = build_workload(workload, args)
    keras.utils.set_random_seed(0)
    model = build()
    plan = keras_gc.plan(model)
    rng = np.random.default_rng(0)
    arrays = [
        rng.standard_normal(tuple(v.shape), dtype="float32")
        for v in model.trainable_variables
    ]
    grads = [keras.ops.convert_to_tensor(a) for a in arrays]
    centralized = [e.centralized for e in plan]
    gc_bytes = sum(a.nbytes for a, c in zip(arrays, centralized, strict=True) if c)
    all_bytes = sum(a.nbytes for a in arrays)
    check_against_numpy(plan, arrays, grads)

    source = np.concatenate([a.ravel() for a in arrays])
    target = np.empty_like(source)
    repeats = 5 if args.quick else 11
    number = 3 if all_bytes > 50e6 else 20
    copy_s = _best_seconds(lambda: np.copyto(target, source), repeats, number)
    result: dict[str, Any] = {
        "tensors": len(arrays),
        "centralized_tensors": sum(centralized),
        "centralized_bytes": gc_bytes,
        "all_bytes": all_bytes,
        "numpy_copy_gbps": all_bytes / copy_s / 1e9,
        "passes": {},
    }
    for how, (centralize, double) in gc_pass_functions(plan, grads).items():
        gc_s = _best_seconds(centralize, repeats, number)
        double_s = _best_seconds(double, repeats, number)
        result["passes"][how] = {
            "centralize_seconds": gc_s,
            "centralize_gbps": gc_bytes / gc_s / 1e9,
            "times2_seconds": double_s,
            "times2_gbps": all_bytes / double_s / 1e9,
        }
    return result


def check_against_numpy(
    plan: keras_gc.Plan, arrays: list[np.ndarray], grads: list[Any]
) -> None:
    """Fails loudly if `plan.centralize` does not match NumPy's GC."""
    outputs = plan.centralize(grads)
    for entry, array, output in zip(plan, arrays, outputs, strict=True):
        expected = array
        if entry.axes is not None:
            mean = array.astype("float64").mean(axis=entry.axes, keepdims=True)
            expected = (array - mean).astype(array.dtype)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(output), expected, rtol=1e-5, atol=1e-6
        )


# ----------------------------------------------------------------------------
# Peers


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


# ----------------------------------------------------------------------------
# Report


def _ratio_cell(ratio: dict[str, Any]) -> str:
    interval = (
        "[-]" if ratio["ci95"] is None else "[{:.3f}, {:.3f}]".format(*ratio["ci95"])
    )
    return f"{ratio['median']:.3f} {interval} (IQR {ratio['q1']:.3f}-{ratio['q3']:.3f})"


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        f"### {env['backend']} (keras {env['keras']}, {env['backend_version']}), "
        f"{env['cpu']}, {env['cores']} cores, {env['date']}",
        "",
        f"Command: `{env['command']}`. Load average at start/end: "
        f"{env['load_start']} / {env['load_end']}.",
        "",
        "Per-step time of `keras_gc.wrap(opt)` / bare `opt`: median of per-round "
        "ratios [its 95% confidence interval] (interquartile range), interleaved "
        "rounds. A round is one `fit` over enough steps that `fit`'s own fixed "
        f"cost is at most {FIT_OVERHEAD_SHARE:.0%} of it (that cost is in the "
        "last column). Target: the ratio keras-gc aims to stay under; `met` when "
        "the whole interval is under it, `missed` when it is all over it. "
        "Control (with `--control`): a third twin, bare too, timed in the same "
        "rounds: how far apart two identical arms come out.",
        "",
        "| workload | optimizer | mode | bare ms/step | GC ms/step | GC/bare "
        "| target | control/bare | rounds x steps | `fit` fixed cost ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["steps"]:
        seconds = row["result"]["seconds"]
        calibration = row["result"].get("fit_calibration")
        overhead = f"{calibration['fit_overhead_s'] * 1e3:.1f}" if calibration else "-"
        control = (
            _ratio_cell(row["result"]["control"]["ratio"])
            if "control" in row["result"]
            else "-"
        )
        lines.append(
            f"| {row['workload']} | {row['optimizer']} | {row['mode']} | "
            f"{seconds['bare']['median'] * 1e3:.2f} | "
            f"{seconds['gc']['median'] * 1e3:.2f} | "
            f"{_ratio_cell(row['result']['gc']['ratio'])} | "
            f"{TARGETS[row['workload']]}: "
            f"{verdict(row['result']['gc']['ratio'], TARGETS[row['workload']])} | "
            f"{control} | {row['result']['gc']['ratio']['n']} x "
            f"{row['result']['steps_per_round']} | {overhead} |"
        )
    if results["memory"]:
        lines += [
            "",
            "Peak memory (max RSS of a fresh process per arm, best of "
            f"{results['memory'][0]['result']['runs']['bare'].__len__()}), and "
            "optimizer state:",
            "",
            "| workload | optimizer | mode | bare peak MiB | GC peak MiB | ratio | "
            "steady-state peak bare / GC MiB (ratio) | growth in training bare / "
            "GC MiB | optimizer variables bare / GC |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in results["memory"]:
            r = row["result"]
            lines.append(
                f"| {row['workload']} | {row['optimizer']} | {row['mode']} | "
                f"{r['peak_mib']['bare']:.0f} | {r['peak_mib']['gc']:.0f} | "
                f"{r['peak_ratio']:.3f} | {r['steady_peak_mib']['bare']:.0f} / "
                f"{r['steady_peak_mib']['gc']:.0f} ({r['steady_ratio']:.3f}) | "
                f"{r['growth_mib']['bare']:.0f} / "
                f"{r['growth_mib']['gc']:.0f} | {row['optimizer_variables']} |"
            )
    if results["gc_pass"]:
        lines += [
            "",
            "The GC pass alone (`plan.centralize(grads)`), GB/s of centralized "
            "gradient, next to a NumPy copy and a per-tensor `g * 2` of the "
            "same tensors (in place: `g.mul_(1)`):",
            "",
            "| workload | tensors (GC) | MB (GC) | how | GC ms | GC GB/s | "
            "g*2 GB/s | numpy copy GB/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in results["gc_pass"]:
            r = row["result"]
            for how, p in r["passes"].items():
                lines.append(
                    f"| {row['workload']} | {r['tensors']} ({r['centralized_tensors']})"
                    f" | {r['centralized_bytes'] / 1e6:.1f} | {how} | "
                    f"{p['centralize_seconds'] * 1e3:.3f} | "
                    f"{p['centralize_gbps']:.2f} | {p['times2_gbps']:.2f} | "
                    f"{r['numpy_copy_gbps']:.2f} |"
                )
    if results["peers"]:
        lines += [
            "",
            "Peers, each against its own bare optimizer in its own loop "
            "(median per-round ratio [95% confidence interval] (IQR)):",
            "",
            "| workload | optimizer | arm | bare ms/step | ratio to bare |",
            "|---|---|---|---|---|",
        ]
        for row in results["peers"]:
            r = row["result"]
            if isinstance(r, str):
                lines.append(f"| {row['workload']} | {row['optimizer']} | {r} | | |")
                continue
            for arm, value in r.items():
                if not isinstance(value, dict) or "ratio" not in value:
                    continue
                lines.append(
                    f"| {row['workload']} | {row['optimizer']} | {arm} | "
                    f"{r['seconds']['bare']['median'] * 1e3:.2f} | "
                    f"{_ratio_cell(value['ratio'])} |"
                )
    return "\n".join(lines) + "\n"


def environment(argv: Sequence[str]) -> dict[str, Any]:
    version = {
        "jax": lambda: __import__("jax").__version__,
        "tensorflow": lambda: __import__("tensorflow").__version__,
        "torch": lambda: __import__("torch").__version__,
    }[BACKEND]()
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "backend": BACKEND,
        "backend_version": f"{BACKEND} {version}",
        "keras": keras.__version__,
        "keras_gc": keras_gc.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": f"KERAS_BACKEND={BACKEND} python examples/benchmark.py "
        + " ".join(argv),
        "load_start": _load(),
        "threads": parse_args(argv).threads,
    }


def set_threads(threads: int | None) -> None:
    if not threads:
        return
    if BACKEND == "torch":
        import torch

        torch.set_num_threads(threads)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    else:
        print("--threads: JAX takes its threads from XLA_FLAGS; left as is.")


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# ----------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="few rounds and steps, one mode, memory and peers on Adam only: "
        "a few minutes per backend on a 2-core CPU",
    )
    parser.add_argument(
        "--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS)
    )
    parser.add_argument(
        "--optimizers", nargs="+", choices=OPTIMIZERS, default=list(OPTIMIZERS)
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=None,
        help="how the step runs: "
        + "; ".join(f"{m}: {MODE_HELP[m]}" for m in MODES)
        + f". Default: {MODES[0]} with --quick, else "
        + ", ".join(m for m in MODES if m != "jit" or BACKEND != "torch"),
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="least number of timed rounds (default: 6 with --quick, else 15)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="add rounds until the timed steps of each measurement add up to "
        "this many seconds (default: 20 with --quick, else 60)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps per round"
    )
    parser.add_argument(
        "--step",
        choices=("fit", "train_on_batch"),
        default="fit",
        help="run each round as one `fit` over `--steps` batches, or as "
        "`--steps` calls of `train_on_batch`",
    )
    parser.add_argument("--hoh-size", type=int, default=300)
    parser.add_argument("--hoh-batch", type=int, default=None)
    parser.add_argument("--resnet-size", type=int, default=32)
    parser.add_argument("--resnet-batch", type=int, default=8)
    parser.add_argument("--memory-repeats", type=int, default=None)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-gc-pass", action="store_true")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-steps", action="store_true")
    parser.add_argument("--output", type=Path, default=None, help="folder for results")
    parser.add_argument(
        "--preload",
        action="append",
        default=[],
        help="a Python file to run first, e.g. one that swaps in another "
        "`keras_gc.Plan.centralize` to measure it",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads on torch and TensorFlow (default: the backend's); "
        "1 gives steadier numbers on a busy machine",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="time a second bare twin in the same rounds (an A/A test): the "
        "control/bare ratio shows the bias and noise of the measurement itself",
    )
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 6 if args.quick else 15
    if args.seconds is None:
        args.seconds = 20.0 if args.quick else 60.0
    if args.hoh_batch is None:
        args.hoh_batch = 8 if args.quick else 32
    if args.memory_repeats is None:
        args.memory_repeats = 1 if args.quick else 2
    if args.modes is None:
        args.modes = (
            [MODES[0]]
            if args.quick
            else [m for m in MODES if m != "jit" or BACKEND != "torch"]
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    set_threads(args.threads)
    for path in args.preload:
        exec(compile(Path(path).read_text(), path, "exec"), {"__name__": "preload"})
    if args.memory_child:
        memory_child(json.loads(args.memory_child), args)
        return 0
    results: dict[str, Any] = {
        "environment": environment(argv),
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "steps": [],
        "memory": [],
        "gc_pass": [],
        "peers": [],
    }
    side_optimizers = ["adam"] if args.quick else args.optimizers
    for workload in args.workloads:
        if not args.no_gc_pass:
            print(f"GC pass: {workload}", flush=True)
            results["gc_pass"].append(
                {"workload": workload, "result": measure_gc_pass(workload, args)}
            )
        for mode in args.modes:
            if (
                args.quick
                and mode == "eager"
                and BACKEND != "torch"
                and workload != "dense60"
            ):
                continue  # eager JAX and TensorFlow are slow on big models
            for optimizer in args.optimizers:
                if args.no_steps:
                    break
                print(f"step: {workload} {optimizer} {mode}", flush=True)
                result = measure_step(workload, optimizer, mode, args)
                print(f"  GC/bare {_ratio_cell(result['gc']['ratio'])}", flush=True)
                results["steps"].append(
                    {
                        "workload": workload,
                        "optimizer": optimizer,
                        "mode": mode,
                        "result": result,
                    }
                )
        if not args.no_memory:
            for optimizer in side_optimizers:
                mode = args.modes[0]
                print(f"memory: {workload} {optimizer} {mode}", flush=True)
                memory = measure_memory(workload, optimizer, mode, args)
                variables = next(
                    (
                        row["result"]["optimizer_variables"]
                        for row in results["steps"]
                        if (row["workload"], row["optimizer"]) == (workload, optimizer)
                    ),
                    None,
                )
                described = (
                    "-"
                    if variables is None
                    else f"{variables['bare']['count']} / {variables['gc']['count']}"
                    f" ({variables['bare']['bytes'] / 1e6:.1f} / "
                    f"{variables['gc']['bytes'] / 1e6:.1f} MB)"
                )
                results["memory"].append(
                    {
                        "workload": workload,
                        "optimizer": optimizer,
                        "mode": mode,
                        "optimizer_variables": described,
                        "result": memory,
                    }
                )
        if not args.no_peers and BACKEND in ("jax", "torch"):
            for optimizer in side_optimizers:
                print(f"peers: {workload} {optimizer}", flush=True)
                peers = measure_peers(workload, optimizer, args)
                if isinstance(peers, str):
                    print(f"  {peers}", flush=True)
                results["peers"].append(
                    {"workload": workload, "optimizer": optimizer, "result": peers}
                )
    results["environment"]["load_end"] = _load()
    table = markdown(results)
    print(table)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / f"benchmark-{BACKEND}.json").write_text(
            json.dumps(results, indent=1, default=str)
        )
        (args.output / f"benchmark-{BACKEND}.md").write_text(table)
        print(f"Wrote {args.output}/benchmark-{BACKEND}.{{json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
