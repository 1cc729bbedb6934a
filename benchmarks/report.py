"""The report: the machine it ran on, and the results as Markdown tables."""

import contextlib
import datetime
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

import keras_gc
from benchmarks import floors
from benchmarks.timing import FIT_OVERHEAD_SHARE, TARGETS, verdict
from benchmarks.workloads import BACKEND


def ratio_cell(ratio: dict[str, Any]) -> str:
    """`median [95% interval] (IQR q1-q3)` of a summarized ratio."""
    interval = (
        "[-]" if ratio["ci95"] is None else "[{:.3f}, {:.3f}]".format(*ratio["ci95"])
    )
    return f"{ratio['median']:.3f} {interval} (IQR {ratio['q1']:.3f}-{ratio['q3']:.3f})"


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown: a heading for the machine, then one table each."""
    env = results["environment"]
    lines = [
        f"### {env['backend']} (keras {env['keras']}, {env['backend_version']}), "
        f"{env['cpu']}, {env['cores']} cores, {env['date']}",
        "",
        f"Command: `{env['command']}`. Load average at start/end: "
        f"{env['load_start']} / {env['load_end']}.",
    ]
    if results["steps"]:
        calibration = results["steps"][0]["result"]["fit_calibration"]
        share = calibration["share"] if calibration else FIT_OVERHEAD_SHARE
        lines += [
            "",
            "Per-step time of `keras_gc.wrap(opt)` / bare `opt`: median of "
            "per-round ratios [its 95% confidence interval] (interquartile range), "
            "interleaved rounds. A round is one `fit` over enough steps that "
            f"`fit`'s own fixed cost is at most {share:.0%} of it "
            "(that cost is in the last column). Target: the ratio keras-gc aims to "
            "stay under; `met` when the whole interval is under it, `missed` when "
            "it is all over it. Control (with `--control`): a third twin, bare "
            "too, timed in the same rounds: how far apart two identical arms come "
            "out.",
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
            ratio_cell(row["result"]["control"]["ratio"])
            if "control" in row["result"]
            else "-"
        )
        lines.append(
            f"| {row['workload']} | {row['optimizer']} | {row['mode']} | "
            f"{seconds['bare']['median'] * 1e3:.2f} | "
            f"{seconds['gc']['median'] * 1e3:.2f} | "
            f"{ratio_cell(row['result']['gc']['ratio'])} | "
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
    lines += cost_lines(results["cost"])
    lines += gc_pass_lines(results["gc_pass"])
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
                    f"{ratio_cell(value['ratio'])} |"
                )
    return "\n".join(lines) + "\n"


def environment(argv: Sequence[str], threads: int | None) -> dict[str, Any]:
    """The machine, the versions, the command and the load, for the report."""
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
        "command": f"KERAS_BACKEND={BACKEND} python -m benchmarks " + " ".join(argv),
        "load_start": load(),
        "threads": threads,
    }


def load() -> str:
    """The machine's 1, 5 and 15-minute load averages."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def cost_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The compiled step's bytes and flops against their floors, as Markdown."""
    if not rows:
        return []
    lines = [
        "",
        "The compiled training step (`jax.jit`), from XLA's cost analysis: "
        "GC/bare, the floor/bare (bytes: one extra read of each centralized "
        "kernel's gradient; flops: an addition and a subtraction per element) "
        "and GC's excess over the floor. Target: bytes at most "
        f"{floors.COMPILED_EXCESS_TARGET:.0%} over the floor. Ops: those the "
        "compiled step launches, GC's added ones per centralized kernel (floor: "
        f"{floors.COMPILED_OPS_PER_KERNEL}, the mean).",
        "",
        "| workload | input | optimizer | GC MB (kernels) | bytes GC/bare | floor "
        "| over floor | target | flops GC/bare | floor | over floor "
        "| ops bare | ops GC | added per kernel |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row["result"]
        if isinstance(r, str):
            return ["", f"The compiled training step: {r}."]
        b, f = r["bytes"], r["flops"]
        lines.append(
            f"| {row['workload']} | {'x'.join(map(str, r['input']))} | "
            f"{row['optimizer']} | {r['centralized_bytes'] / 1e6:.1f} | "
            f"{b['ratio']:.4f} | {b['floor_ratio']:.4f} | {b['excess']:+.2%} | "
            f"{b['verdict']} | {f['ratio']:.4f} | {f['floor_ratio']:.4f} | "
            f"{f['excess']:+.2%} | {r['bare']['ops']} | {r['gc']['ops']} | "
            f"{r['ops']['added_per_kernel']:.2f} |"
        )
    return lines


def gc_pass_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The GC pass alone against its memory floor, and the peers', as Markdown."""
    if not rows:
        return []
    lines = [
        "",
        "The GC pass alone (`plan.centralize(grads)`; in place: "
        "`in_place=True`), fastest of many repetitions, against its floor: "
        f"{floors.PASS_COPIES} copies of the centralized bytes at the NumPy copy "
        "bandwidth of this process. Target: at most "
        f"{floors.PASS_TARGET}x the floor. Per kernel: the time over the floor, "
        "divided by the centralized kernels. `g*2`: the backend's cheapest "
        "per-tensor op on the same tensors (in place: `g.mul_(1)`); GC/g*2 floor: "
        f"the pass against {floors.PASS_COPIES} of those over its bytes. Call ms: "
        "the call of a pass compiled alone, doing nothing (a training step "
        "does not pay this for GC); in-call per kernel: the per-kernel cost "
        "without it. Ops per kernel: the ops the pass runs (torch: aten ops, "
        "nested ones included; a TensorFlow graph's ops; what jax.jit launches), per "
        "centralized kernel; % in ops: torch's share of the time inside them.",
        "",
        "| workload | tensors (GC) | MB (GC) | how | GC ms | floor ms | GC/floor "
        "| target | per kernel us | GC GB/s | g*2 GB/s | copy GB/s | GC/g*2 floor "
        "| call ms | in-call per kernel us | ops per kernel | % in ops |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    peers = []
    for row in rows:
        r = row["result"]
        head = (
            f"| {row['workload']} | {r['tensors']} ({r['centralized_tensors']}) | "
            f"{r['centralized_bytes'] / 1e6:.1f}"
        )
        for how, p in r["passes"].items():
            lines.append(
                f"{head} | {how} | {_pass_cells(p, r['floor_seconds'])} | "
                f"{p['times2_gbps']:.2f} | {r['numpy_copy_gbps']:.2f} | "
                f"{p['backend_floor_ratio']:.2f} | "
                f"{_scaled(p['call_seconds'], 1e3, '.3f')} | "
                f"{_scaled(p['per_kernel_in_call_seconds'], 1e6, '.2f')} | "
                f"{_scaled(p['ops_per_kernel'], 1, '.2f')} | "
                f"{_scaled((p['ops'] or {}).get('inside_share'), 100, '.0f')} |"
            )
        if isinstance(r["peers"], str):
            peers.append(f"| {row['workload']} | {r['peers']} |" + " |" * 6)
            continue
        for name, p in r["peers"].items():
            ours = p["keras_gc_per_kernel_seconds"]
            mine = r["passes"][p["versus"]]["ops"]
            ops = (
                f"{p['ops']['ops'] / r['centralized_tensors']:.2f} | "
                f"{mine['ops'] / r['centralized_tensors']:.2f}"
                if p["ops"] and mine
                else "- | -"
            )
            peers.append(
                f"| {row['workload']} | {name} | {p['per_kernel_seconds'] * 1e6:.2f} "
                f"| keras_gc, {p['versus']} | {ours * 1e6:.2f} | {p['verdict']} "
                f"| {ops} |"
            )
    if not peers:
        return lines
    return [
        *lines,
        "",
        "Fixed cost per centralized kernel, keras_gc against the peers on the "
        "same gradients, timed in alternating rounds (target: keras_gc's at most "
        "the peer's):",
        "",
        "| workload | peer | peer us/kernel | keras_gc pass | keras_gc us/kernel "
        "| target | peer ops/kernel | keras_gc ops/kernel |",
        "|---|---|---|---|---|---|---|---|",
        *peers,
    ]


def _scaled(value: float | None, scale: float, spec: str) -> str:
    return "-" if value is None else format(value * scale, spec)


def _pass_cells(p: dict[str, Any], floor_seconds: float) -> str:
    return (
        f"{p['centralize_seconds'] * 1e3:.3f} | {floor_seconds * 1e3:.3f} | "
        f"{p['floor_ratio']:.2f} | {p['verdict']} | "
        f"{p['per_kernel_seconds'] * 1e6:.2f} | {p['centralize_gbps']:.2f}"
    )
