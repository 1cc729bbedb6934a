"""Timing and statistics: interleaved rounds, medians with their intervals, verdicts.

`measure_step` times a training step of `keras_gc.wrap(opt)` against the bare
`opt`, on twin models in one process, in rounds that go through every order of
the arms.
"""

import argparse
import itertools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from benchmarks.workloads import (
    build_workload,
    compile_arm,
    count_variables,
    step_runner,
    steps_for,
    twin_models,
)

FIT_OVERHEAD_SHARE = 0.02
MAX_ROUND_BYTES = 2**29
# The GC/bare per-step ratio keras-gc aims to stay under (its issue #6).
TARGETS = {"hoh": 1.02, "dense60": 1.05, "resnet50": 1.05}


def median_interval(
    ordered: Sequence[float], confidence: float = 0.95
) -> tuple[float, float] | None:
    """The distribution-free confidence interval of the median of sorted values.

    It is `x(k)..x(n+1-k)` (1-based order statistics), for the largest `k` with
    `P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2`: round times on a shared
    machine are skewed and heavy-tailed, so no normal approximation holds.

    Args:
        ordered: The values, sorted.
        confidence: The interval's coverage.

    Returns:
        `(low, high)`, or `None` when there are too few values (fewer than 6
        at 95%).
    """
    n = len(ordered)
    tail = (1 - confidence) / 2
    below, k = 0.0, 0
    while k < n:
        below += math.comb(n, k) / 2**n  # now P(Binomial(n, 1/2) < k + 1)
        if below > tail:
            break
        k += 1
    if k == 0:
        return None
    return ordered[k - 1], ordered[n - k]


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, its 95% confidence interval, quartiles, min and max of some values.

    The interval (`ci95`) is `median_interval`'s, `None` below 6 values.
    """
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    interval = median_interval(ordered)
    return {
        "median": statistics.median(ordered),
        "ci95": None if interval is None else list(interval),
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


def best_seconds(function: Callable[[], Any], repeats: int, number: int) -> float:
    """Fastest over `repeats` of the mean time of `number` calls.

    The minimum: other tenants of the machine can only slow a call down, so
    the fastest repetition is the closest to what the code itself costs.
    """
    function()
    function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            function()
        samples.append((time.perf_counter() - start) / number)
    return min(samples)


def paired_best_seconds(
    functions: dict[str, Callable[[], Any]], rounds: int, repeats: int, number: int
) -> dict[str, float]:
    """`best_seconds` of each function, over `rounds` that take them in turn.

    Timing one function after another would credit a change in the machine's
    load to one of them; alternating them spreads it over both.
    """
    best = dict.fromkeys(functions, math.inf)
    for round_ in range(rounds):
        names = list(functions)
        if round_ % 2:
            names.reverse()
        for name in names:
            seconds = best_seconds(functions[name], repeats, number)
            best[name] = min(best[name], seconds)
    return best


def _seconds(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def fit_steps(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    share: float = FIT_OVERHEAD_SHARE,
) -> dict[str, Any]:
    """Steps per `fit` round that make `fit`'s fixed cost a small share of it.

    A `fit` call pays for its set-up and tear-down once, on top of its steps:
    in every round of both arms alike, it pulls the GC/bare ratio toward 1.
    This times `fit` over one step and over `steps` steps (fastest of two
    each), solves for the fixed cost and the cost per step, and returns enough
    steps for the fixed cost to be at most `share` of a round,
    and at least `steps` (but no more than `MAX_ROUND_BYTES` of batches).
    """
    steps = max(steps, 2)

    def fastest(run: Callable[[], None]) -> float:
        run()
        return min(_seconds(run) for _ in range(2))

    one = fastest(step_runner(model, x, y, 1, "fit"))
    many = fastest(step_runner(model, x, y, steps, "fit"))
    per_step = max((many - one) / (steps - 1), 1e-9)
    overhead = max(one - per_step, 0.0)
    needed = math.ceil(overhead / (share * per_step))
    cap = max(steps, MAX_ROUND_BYTES // (x.nbytes + y.nbytes))
    return {
        "steps": min(max(steps, needed), cap),
        "fit_overhead_s": overhead,
        "step_s": per_step,
        "share": share,
    }


def measure_step(
    workload: str, optimizer: str, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Per-step time of the GC arm against the bare arm (and the A/A control)."""
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
        calibration = fit_steps(bare, x, y, steps, args.fit_overhead_share)
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
        "bare": count_variables(bare.optimizer.variables),
        "gc": count_variables(wrapped.optimizer.variables),
    }
    return result
