"""Peak memory of each arm, one fresh subprocess per arm.

CPU backends keep no allocator statistics, so this reads the peak resident set
size (Linux `VmHWM`) of a fresh process that builds the workload and trains
it: over the whole run, over steady-state steps only (the peak is reset after
the first, compiling steps), and its growth from just before training. RSS
counts every page the process touched (libraries, compiler, allocator caches),
so it is coarse and a little noisy. `getrusage`'s `ru_maxrss` is no use here:
a child inherits its parent's.
"""

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras

from benchmarks.workloads import build_workload, compile_arm, step_runner, steps_for

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "MEMORY "


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
    memory = {
        "rss_before_mib": before,
        "max_rss_before_mib": peak_before,
        "max_rss_mib": max(peak_first, _max_rss_mib()),
        "max_rss_steady_mib": _max_rss_mib() if reset else None,
        "rss_after_mib": _rss_mib(),
    }
    print(PREFIX + json.dumps(memory), flush=True)


def measure_memory(
    workload: str, optimizer: str, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Peak, steady-state peak and growth of each arm, best of the repeats."""
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "gc": []}
    for r in range(args.memory_repeats):
        for arm in ("bare", "gc") if r % 2 == 0 else ("gc", "bare"):
            spec = {
                "workload": workload,
                "optimizer": optimizer,
                "mode": mode,
                "gc": arm == "gc",
            }
            runs[arm].append(_run_child(spec, args))
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


def _run_child(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        *_child_flags(args),
        "--memory-child",
        json.dumps(spec),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env=os.environ, cwd=ROOT
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(PREFIX)]
    if done.returncode or not lines:
        raise RuntimeError(
            f"memory subprocess failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len(PREFIX) :])


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
        flags.append(f"--preload={Path(path).resolve()}")
    return flags
