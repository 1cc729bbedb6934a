"""The command line: `python -m benchmarks [--quick] [--output DIR] ...`."""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import benchmarks
from benchmarks.cost import measure_cost
from benchmarks.gc_pass import measure_gc_pass
from benchmarks.memory import measure_memory, memory_child
from benchmarks.peers import measure_peers
from benchmarks.report import environment, load, markdown, ratio_cell
from benchmarks.timing import FIT_OVERHEAD_SHARE, measure_step
from benchmarks.workloads import (
    BACKEND,
    MODE_HELP,
    MODES,
    OPTIMIZERS,
    WORKLOADS,
)


def set_threads(threads: int | None) -> None:
    """Sets torch's or TensorFlow's intra-op threads (JAX takes XLA_FLAGS)."""
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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The benchmark's arguments, with the defaults `--quick` implies."""
    parser = argparse.ArgumentParser(
        description=(benchmarks.__doc__ or "").split("\n\n")[0],
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
    parser.add_argument(
        "--fit-overhead-share",
        type=float,
        default=FIT_OVERHEAD_SHARE,
        help="the largest share of a `fit` round that `fit`'s own fixed cost may "
        "take; rounds get enough steps for it (default %(default)s)",
    )
    parser.add_argument("--hoh-size", type=int, default=300)
    parser.add_argument("--hoh-batch", type=int, default=None)
    parser.add_argument("--resnet-size", type=int, default=32)
    parser.add_argument("--resnet-batch", type=int, default=8)
    parser.add_argument("--memory-repeats", type=int, default=None)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--no-cost",
        action="store_true",
        help="skip XLA's cost analysis of the compiled step (JAX only)",
    )
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
    """Runs the benchmark, prints its tables, and writes them with `--output`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    set_threads(args.threads)
    for path in args.preload:
        exec(compile(Path(path).read_text(), path, "exec"), {"__name__": "preload"})
    if args.memory_child:
        memory_child(json.loads(args.memory_child), args)
        return 0
    results: dict[str, Any] = {
        "environment": environment(argv, args.threads),
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "cost": [],
        "steps": [],
        "memory": [],
        "gc_pass": [],
        "peers": [],
    }
    side_optimizers = ["adam"] if args.quick else args.optimizers
    for workload in args.workloads:
        for optimizer in [] if args.no_cost else side_optimizers:
            print(f"compiled cost: {workload} {optimizer}", flush=True)
            cost = measure_cost(workload, optimizer, args)
            results["cost"].append(
                {"workload": workload, "optimizer": optimizer, "result": cost}
            )
            if isinstance(cost, str):
                print(f"  {cost}", flush=True)
                args.no_cost = True  # the same reason for every workload
                break
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
                print(f"  GC/bare {ratio_cell(result['gc']['ratio'])}", flush=True)
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
    results["environment"]["load_end"] = load()
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
