"""The pass benchmarks that docs/agc.md and docs/performance.md quote run,
check their result against NumPy, and their floor is the hand count of what
AGC and GC must read."""

import keras
import numpy as np
import pytest

import keras_gc
from benchmarks import agc_cost, agc_pass, update_pass


def test_the_floor_is_a_read_of_each_clipped_gradient_and_weight():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2, name="head")]
    )
    plan = keras_gc.plan(model, agc=0.01)
    # Dense(3): gradient and weights of its (4, 3) kernel, 2 x 48 bytes; the head
    # (3, 2), centralized but not clipped: its gradient once, 24 bytes.
    assert [e.clipped for e in plan] == [True, False, False, False]
    assert agc_cost.floor_bytes(plan) == 2 * 48 + 24


@pytest.mark.jax
def test_agc_cost_compares_each_arm_with_bare_and_the_floor():
    result = agc_cost.measure("dense60", "sgdm")
    for arm in ("gc", "agc", "agc+gc"):
        assert result[arm] > result["bare"] > 0
        assert result[f"{arm}/bare"] == result[arm] / result["bare"]
        assert result[f"{arm}/floor"] > 0


def test_agc_pass_times_both_passes_against_their_floors():
    result = agc_pass.measure("dense60", repeats=1)
    # 60 Dense(64) kernels are clipped; the Dense(10) head is left alone.
    assert result["kernels"] == 60
    assert result["agc_gc_seconds"] > 0 and result["gc_seconds"] > 0
    assert result["agc_gc_floor_ratio"] > 0 and result["gc_floor_ratio"] > 0


def test_update_pass_is_checked_against_numpy_and_timed_in_each_way():
    result = update_pass.measure("dense60", repeats=1)
    # 60 Dense(64) kernels and the Dense(10) head.
    assert result["kernels"] == 61
    ways = ["eager", "jit"] if keras.backend.backend() == "jax" else ["eager"]
    for way in ways:
        assert result[way]["update_seconds"] > 0
        assert result[way]["update_floor_ratio"] > 0
        assert result[way]["per_kernel_update_seconds"] > 0
        assert result[way]["gradient_floor_ratio"] > 0


def test_update_pass_check_fails_on_a_wrong_pass():
    plan = keras_gc.plan(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
    old = [np.ones((4, 3), "float32"), np.zeros(3, "float32")]
    new = [np.arange(12, dtype="float32").reshape(4, 3), np.ones(3, "float32")]
    with pytest.raises(AssertionError):
        update_pass.check_against_numpy(plan, old, new, new)
