"""The benchmarks package: round sizing, statistics, and a run as the docs give it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import report, timing

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    ("overhead", "step", "expected"),
    [(0.060, 0.005, 600), (0.004, 0.00125, 160), (0.0, 0.4, 3), (0.060, 0.4, 8)],
    ids=["tensorflow-dense60", "jax-dense60", "no-overhead", "tensorflow-hoh"],
)
def test_fit_rounds_make_fits_fixed_cost_two_percent(
    monkeypatch, overhead, step, expected
):
    # A fake `fit` of n steps that takes overhead + n * step seconds.
    monkeypatch.setattr(
        timing, "step_runner", lambda model, x, y, steps, how: lambda: steps
    )
    monkeypatch.setattr(timing, "_seconds", lambda run: overhead + run() * step)
    x = np.zeros((8, 4), "float32")
    result = timing.fit_steps(None, x, x, 3)
    # Up to one step more: the fixed cost is solved for in floating point.
    assert expected <= result["steps"] <= expected + 1
    assert result["fit_overhead_s"] == pytest.approx(overhead, abs=1e-12)
    assert result["step_s"] == pytest.approx(step)


def test_rounds_go_on_until_the_time_budget_is_spent(monkeypatch):
    clock = iter(range(1000))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    calls = {"a": 0, "b": 0}

    def arm(name):
        def run():
            calls[name] += 1

        return run

    # Each timed call takes one tick of the fake clock.
    times = timing.interleave({"a": arm("a"), "b": arm("b")}, 2, 1, 1, 9)
    assert len(times["a"]) == len(times["b"]) == 5
    assert calls == {"a": 6, "b": 6}
    times = timing.interleave({"a": arm("a"), "b": arm("b")}, 4, 1, 0, 0)
    assert len(times["a"]) == 4


def test_each_arm_runs_in_each_place_of_a_round_equally_often():
    calls = []
    arms = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    timing.interleave(arms, rounds=12, steps=1, warmup=0)
    rounds = [calls[i : i + 3] for i in range(0, len(calls), 3)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)
    for place in range(3):
        assert sorted(r[place] for r in rounds) == ["a"] * 4 + ["b"] * 4 + ["c"] * 4


def test_paired_best_seconds_alternate_and_keep_each_ones_fastest(monkeypatch):
    # The fake clock ticks once per reading; "slow" sleeps 3 ticks a call.
    clock = {"now": 0}

    def perf_counter():
        clock["now"] += 1
        return clock["now"]

    monkeypatch.setattr(timing.time, "perf_counter", perf_counter)
    order = []

    def fast():
        order.append("fast")

    def slow():
        order.append("slow")
        clock["now"] += 3

    best = timing.paired_best_seconds({"fast": fast, "slow": slow}, 2, 1, 1)
    assert best == {"fast": 1, "slow": 4}
    # Three calls (two warm-up, one timed) each, "fast" first, then reversed.
    assert order == ["fast"] * 3 + ["slow"] * 6 + ["fast"] * 3


def test_report_leaves_out_the_tables_of_what_was_not_measured():
    environment = dict.fromkeys(
        ("backend", "keras", "backend_version", "cpu", "cores", "date", "command"),
        "x",
    )
    environment |= {"load_start": "0", "load_end": "0"}
    empty = {"environment": environment, "steps": [], "memory": [], "cost": []}
    table = report.markdown({**empty, "gc_pass": [], "peers": []})
    assert "|" not in table
    assert "Per-step time" not in table


# The 95% interval of a median from order statistics x(k)..x(n+1-k), k the
# largest with P(Binomial(n, 1/2) < k) <= 2.5% (e.g. Conover, Practical
# Nonparametric Statistics, 3rd ed., section 3.2). P(Binomial < k) is 1/64,
# 11/1024, 0.021 and 0.021 for n, k = 6, 1; 10, 2; 20, 6; 30, 10; the next k
# would pass 2.5% (and at 90% confidence, n = 30 would take k = 11).
@pytest.mark.parametrize(
    ("n", "expected"),
    [(5, None), (6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (30, (10, 21))],
)
def test_median_interval_is_the_order_statistics_one(n, expected):
    # Shuffled, as rounds come; the values are their own ranks.
    values = np.random.default_rng(n).permutation(np.arange(1.0, n + 1)).tolist()
    interval = timing.summary(values)["ci95"]
    assert (interval if interval is None else tuple(interval)) == expected


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ([0.99, 1.02], "met"),
        ([1.021, 1.08], "missed"),
        ([1.01, 1.03], "undecided"),
        (None, "too few rounds"),
    ],
)
def test_verdict_needs_the_whole_interval_on_one_side(interval, expected):
    assert timing.verdict({"ci95": interval}, 1.02) == expected


def test_runs_end_to_end(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--workloads=dense60",
            "--optimizers=sgdm",
            "--rounds=2",
            "--seconds=0",
            "--no-memory",
            "--no-peers",
            "--control",
            # A looser share than the default 2%: fewer steps per round, the
            # same calibration (TensorFlow's dense60 step needs ~900 at 2%).
            "--fit-overhead-share=0.2",
            # Two intra-op threads on a busy 2-core machine can make a torch step
            # fifty times slower, past the timeout.
            *(["--threads=1"] if os.environ["KERAS_BACKEND"] == "torch" else []),
            f"--output={tmp_path}",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    backend = os.environ["KERAS_BACKEND"]
    results = json.loads((tmp_path / f"benchmark-{backend}.json").read_text())
    (row,) = results["steps"]
    calibration = row["result"]["fit_calibration"]
    assert row["result"]["steps_per_round"] == calibration["steps"] >= 40
    assert calibration["share"] == 0.2
    assert 0 < row["result"]["gc"]["ratio"]["median"] < 10
    assert row["result"]["gc"]["ratio"]["n"] == 2
    assert len(row["result"]["control"]["per_round"]) == 2
    (gc_pass,) = results["gc_pass"]
    for how, row in gc_pass["result"]["passes"].items():
        assert row["floor_ratio"] > 0
        assert row["verdict"] in ("met", "missed")
        assert row["backend_floor_ratio"] > 0
        counted = {"torch": ("eager", "in place"), "tensorflow": ("graph",)}
        if how in counted.get(backend, ("jit",)):
            # At least one op per kernel: its mean or its subtraction.
            assert row["ops_per_kernel"] >= 1
        else:
            assert row["ops"] is None
        # A pass compiled alone has its call timed apart; an eager pass has no
        # call of its own, and TensorFlow's XLA copies what it returns.
        compiled = how == "graph" or (how == "jit" and backend == "jax")
        assert (row["call_seconds"] is not None) is compiled
        if compiled:
            assert row["call_seconds"] > 0
            assert row["per_kernel_in_call_seconds"] < row["per_kernel_seconds"]
    (cost,) = results["cost"]
    if backend == "jax":
        # Deterministic: XLA's cost analysis; GC adds at least the floor's read.
        assert (
            cost["result"]["bytes"]["ratio"] >= cost["result"]["bytes"]["floor_ratio"]
        )
        assert cost["result"]["bytes"]["floor_ratio"] > 1
        ops = cost["result"]["ops"]
        assert ops["added_per_kernel"] >= ops["floor_per_kernel"] == 1
    else:
        assert cost["result"].startswith("no cost analysis")
    table = (tmp_path / f"benchmark-{backend}.md").read_text()
    assert "| dense60 | sgdm |" in table
    # The verdict, then the control's ratio.
    assert re.search(r"\| 1\.05: too few rounds \| \d\.\d{3} \[-\]", table)


def test_plan_build_benchmark_runs():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.plan_build", "--live-objects", "1000"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(
        r"plan from the variables .* \d+\.\d+ s; plan\(model\)", result.stdout
    )
